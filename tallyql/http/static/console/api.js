// The console's only way to the data: the public GraphQL API, with the key of this tab.
const KEY = "tallyql.console.key";
export const GRAPHQL_PATH = "/graphql";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
  }
}

// POST a query; resolve with its data, or reject with the API's own messages (a field error
// rejects too: a view with a missing figure would show a wrong one)
export async function gql(query, variables = {}, key = getKey()) {
  let response;
  try {
    response = await fetch(GRAPHQL_PATH, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        authorization: `Bearer ${key}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new ApiError(`The server could not be reached (${error.message}).`, "NETWORK", 0);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered HTTP ${response.status} without a GraphQL body.`,
      "BAD_ANSWER", response.status);
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const message = [...new Set(body.errors.map((e) => e.message))].join(" ");
    throw new ApiError(message, first.extensions && first.extensions.code, response.status);
  }
  return body.data;
}

// GET an export (/v1/export/...) with the key in the header, which a plain link cannot carry,
// and hand it to the browser as a file under the name the server gives it
export async function download(path, params, key = getKey()) {
  let response;
  try {
    response = await fetch(`${path}?${params}`, { headers: { authorization: `Bearer ${key}` } });
  } catch (error) {
    throw new ApiError(`The server could not be reached (${error.message}).`, "NETWORK", 0);
  }
  if (!response.ok) {
    let message = `The export failed with HTTP ${response.status}.`;
    try {
      const body = await response.json();
      message = (body.error && body.error.message) || body.message || body.detail || message;
    } catch { /* not JSON: keep the status */ }
    throw new ApiError(message, "EXPORT", response.status);
  }
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const name = match ? match[1] : path.split("/").pop();
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return name;
}
