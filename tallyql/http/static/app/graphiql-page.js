// tallyql's GraphiQL page. The API key is asked once and kept in localStorage; queries and
// mutations are POSTed with `Authorization: Bearer <key>` (an Authorization header typed in
// the headers pane wins), subscriptions run over WebSocket (graphql-transport-ws, graphql-ws's
// client) with the key in connection_init. Changing the key gives GraphiQL a new fetcher,
// which makes it fetch the schema again, so the docs pane follows the key.
(function () {
  "use strict";

  var STORAGE_KEY = "tallyql.apiKey";
  var config = JSON.parse(document.getElementById("tallyql-config").textContent);
  var endpoint = new URL(config.endpoint, window.location.href);
  var wsUrl = (endpoint.protocol === "https:" ? "wss://" : "ws://") + endpoint.host + endpoint.pathname;
  var form = document.getElementById("tallyql-key");
  var input = document.getElementById("tallyql-key-input");
  var status = document.getElementById("tallyql-key-status");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var wsClient = null;

  function storedKey() {
    try {
      return window.localStorage.getItem(STORAGE_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function storeKey(key) {
    try {
      if (key) {
        window.localStorage.setItem(STORAGE_KEY, key);
      } else {
        window.localStorage.removeItem(STORAGE_KEY);
      }
    } catch (e) {
      // storage refused (private mode): the key still works for this page
    }
  }

  function headerValue(headers, name) {
    for (var k in headers || {}) {
      if (Object.prototype.hasOwnProperty.call(headers, k) && k.toLowerCase() === name) {
        return headers[k];
      }
    }
    return null;
  }

  // The operation GraphiQL runs: the one named, else the document's only one. Parsed from the
  // query sent (GraphiQL's own documentAST may lag behind an edit).
  function operationOf(query, name) {
    var graphql = GraphiQL.GraphQL;
    try {
      return graphql.getOperationAST(graphql.parse(query), name || undefined);
    } catch (e) {
      return null; // a syntax error: let the server say so
    }
  }

  function wsError(error) {
    if (Array.isArray(error)) {
      return { errors: error };
    }
    if (error && typeof error.code === "number") {
      var reason = error.reason || (error.code === 4403 ? "missing, invalid or revoked API key" : "");
      return new Error("WebSocket closed (" + error.code + ")" + (reason ? ": " + reason : ""));
    }
    return error instanceof Error ? error : new Error(String(error));
  }

  function newWsClient(authorization) {
    return graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      retryAttempts: 0,
      connectionParams: authorization ? { Authorization: authorization } : {},
    });
  }

  function subscription(client, params, oneOff) {
    return {
      subscribe: function (observer) {
        var finish = function () {
          if (oneOff) {
            client.dispose();
          }
        };
        var dispose = client.subscribe(
          {
            query: params.query,
            variables: params.variables || undefined,
            operationName: params.operationName || undefined,
          },
          {
            next: function (value) { observer.next(value); },
            error: function (error) { finish(); observer.error(wsError(error)); },
            complete: function () { finish(); observer.complete(); },
          }
        );
        return {
          unsubscribe: function () { dispose(); finish(); },
        };
      },
    };
  }

  function makeFetcher(key) {
    if (wsClient) {
      wsClient.dispose();
    }
    var authorization = key ? "Bearer " + key : null;
    var client = newWsClient(authorization);
    wsClient = client;
    return function fetcher(params, opts) {
      var paneHeaders = (opts && opts.headers) || {};
      var paneAuthorization = headerValue(paneHeaders, "authorization");
      var op = operationOf(params.query, params.operationName);
      if (op && op.operation === "subscription") {
        if (paneAuthorization && paneAuthorization !== authorization) {
          return subscription(newWsClient(paneAuthorization), params, true);
        }
        return subscription(client, params, false);
      }
      var headers = { "Content-Type": "application/json", Accept: "application/json" };
      Object.keys(paneHeaders).forEach(function (k) { headers[k] = paneHeaders[k]; });
      if (authorization && !paneAuthorization) {
        headers.Authorization = authorization;
      }
      // errors (401, 403, 413, 429, 503) come back as GraphQL bodies too
      return fetch(endpoint.href, {
        method: "POST",
        headers: headers,
        body: JSON.stringify(params),
      }).then(function (response) { return response.json(); });
    };
  }

  function showStatus(key) {
    status.className = key ? "" : "missing";
    status.textContent = key
      ? "Key kept in this browser; queries, the docs and subscriptions use it."
      : "Enter an API key (tallyql serve --demo prints one).";
  }

  var linked = new URLSearchParams(window.location.search);

  function render(key) {
    showStatus(key);
    root.render(
      React.createElement(GraphiQL, {
        fetcher: makeFetcher(key),
        defaultQuery: config.defaultQuery,
        // ?document=...&variables=... (the console's "Open as query") opens that operation;
        // not ?query=, which /graphql answers by running it
        query: linked.get("document") || undefined,
        variables: linked.get("variables") || undefined,
        shouldPersistHeaders: false,
      })
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var key = input.value.trim();
    storeKey(key);
    render(key);
  });

  var initial = storedKey();
  input.value = initial;
  if (!initial) {
    input.focus();
  }
  render(initial);
})();
