// tallyql's GraphiQL page. The API key is asked once and kept in localStorage; queries and
// mutations are POSTed with `Authorization: Bearer <key>` (an Authorization header typed in
// the headers pane wins), subscriptions run over WebSocket (graphql-transport-ws, graphql-ws's
// client) with the key in connection_init. Changing the key gives GraphiQL a new fetcher,
// which makes it fetch the schema again, so the docs pane follows the key.
// The Ask box sends a question in plain words to GraphQL's ask and shows what was understood,
// the summary, the server's chart (/v1/ask.png) and the rows; "Open as query" puts the
// equivalent metrics(query:) document and its variables into the editor.
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
  // what the editor shows: ?document=...&variables=... (the console's "Open as query"), not
  // ?query=, which /graphql answers by running it; later, what "Open as query" put there
  var opened = {
    query: linked.get("document") || undefined,
    variables: linked.get("variables") || undefined,
  };
  var currentKey = "";
  var fetcher = null;

  function render(key, keyChanged) {
    currentKey = key;
    showStatus(key);
    if (keyChanged || !fetcher) {
      fetcher = makeFetcher(key);
    }
    root.render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: config.defaultQuery,
        query: opened.query,
        variables: opened.variables,
        shouldPersistHeaders: false,
      })
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var key = input.value.trim();
    storeKey(key);
    render(key, true);
  });

  // ---- Ask ----------------------------------------------------------------------------------

  var ASK_QUERY = "query Ask($question: String!, $timezone: String!) {\n" +
    "  ask(question: $question, timezone: $timezone) {\n" +
    "    understood interpretation notes summary suggestions query\n" +
    "    result { metrics dimensions totalRows truncated rows { bucket keys values } }\n" +
    "  }\n}";
  var METRICS_QUERY = "query Metrics($query: MetricsQueryInput!) {\n" +
    "  metrics(query: $query) {\n" +
    "    metrics dimensions totalRows truncated\n" +
    "    rows { bucket keys values }\n" +
    "  }\n}\n";
  var askForm = document.getElementById("tallyql-ask");
  var askInput = document.getElementById("tallyql-ask-input");
  var answerBox = document.getElementById("tallyql-ask-answer");
  var chartUrl = null;
  var asked = 0;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") {
        node.textContent = attrs[k];
      } else if (k.slice(0, 2) === "on") {
        node.addEventListener(k.slice(2), attrs[k]);
      } else if (attrs[k] !== null && attrs[k] !== undefined) {
        node.setAttribute(k, attrs[k]);
      }
    });
    (children || []).forEach(function (c) {
      if (c) {
        node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
      }
    });
    return node;
  }

  function zone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (e) {
      return "UTC";
    }
  }

  function number(v) {
    if (v === null || v === undefined) {
      return "–";
    }
    return Number.isInteger(v) ? v.toLocaleString("en-US")
      : v.toLocaleString("en-US", { maximumFractionDigits: 4 });
  }

  function rowsTable(result) {
    var timed = result.rows.some(function (r) { return r.bucket; });
    var head = (timed ? ["Time"] : []).concat(result.dimensions, result.metrics);
    var firstMetric = head.length - result.metrics.length;
    return el("table", { id: "tallyql-ask-rows" }, [
      el("thead", {}, [el("tr", {}, head.map(function (c, i) {
        return el("th", { scope: "col", class: i >= firstMetric ? "num" : null, text: c });
      }))]),
      el("tbody", {}, result.rows.map(function (row) {
        return el("tr", {}, [].concat(
          timed ? [el("td", { text: row.bucket || "" })] : [],
          row.keys.map(function (k) { return el("td", { text: k === null ? "(none)" : k }); }),
          row.values.map(function (v) { return el("td", { class: "num", text: number(v) }); })
        ));
      })),
    ]);
  }

  function show(children) {
    answerBox.hidden = false;
    answerBox.replaceChildren.apply(answerBox, children.filter(Boolean));
  }

  function headers() {
    var h = { "Content-Type": "application/json", Accept: "application/json" };
    if (currentKey) {
      h.Authorization = "Bearer " + currentKey;
    }
    return h;
  }

  function openAsQuery(query) {
    opened = { query: METRICS_QUERY, variables: JSON.stringify({ query: query }, null, 2) };
    render(currentKey, false);
    // the variables hold the query itself: show them (GraphiQL opens its tools on the tab)
    window.setTimeout(function () {
      var tabs = document.querySelectorAll(".graphiql-editor-tools button");
      for (var i = 0; i < tabs.length; i++) {
        if (tabs[i].textContent.trim() === "Variables") {
          tabs[i].click();
          break;
        }
      }
    }, 0);
  }

  // the server draws the chart; fetched with the key (an <img src> cannot carry it)
  function loadChart(question, timeZone, holder, turn) {
    var params = new URLSearchParams({ q: question, timezone: timeZone });
    fetch("/v1/ask.png?" + params.toString(), { headers: headers() })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the chart failed with HTTP " + response.status);
        }
        return response.blob();
      })
      .then(function (blob) {
        if (turn !== asked) {
          return;
        }
        if (chartUrl) {
          URL.revokeObjectURL(chartUrl);
        }
        chartUrl = URL.createObjectURL(blob);
        holder.replaceChildren(
          el("img", { id: "tallyql-ask-chart", src: chartUrl, alt: "Chart: " + question })
        );
      })
      .catch(function (error) {
        if (turn === asked) {
          holder.replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
        }
      });
  }

  function ask(question) {
    var turn = ++asked;
    var timeZone = zone();
    askInput.value = question;
    show([el("p", { class: "muted", text: "Asking…" })]);
    fetch(endpoint.href, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({
        query: ASK_QUERY,
        variables: { question: question, timezone: timeZone },
      }),
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (turn !== asked) {
          return;
        }
        if (body.errors && body.errors.length) {
          show([el("p", { class: "error", text: body.errors[0].message })]);
          return;
        }
        var a = body.data.ask;
        var close = el("button", {
          type: "button", class: "link", text: "Close",
          onclick: function () { answerBox.hidden = true; },
        });
        if (!a.understood) {
          show([
            el("h2", { text: "Not understood" }),
            el("p", { id: "tallyql-ask-interpretation", text: a.interpretation }),
            el("p", { class: "muted", text: "Questions it can answer:" }),
            el("ul", {}, a.suggestions.map(function (s) {
              return el("li", {}, [el("button", {
                type: "button", class: "link", text: s, onclick: function () { ask(s); },
              })]);
            })),
            close,
          ]);
          return;
        }
        var chart = el("div", { class: "tallyql-ask-chart" }, [
          el("p", { class: "muted", text: "Drawing the chart…" }),
        ]);
        show([
          el("h2", { text: "Understood as" }),
          el("p", { id: "tallyql-ask-interpretation", text: a.interpretation }),
          a.notes.length
            ? el("ul", { class: "muted" }, a.notes.map(function (n) { return el("li", { text: n }); }))
            : null,
          el("p", { id: "tallyql-ask-summary", text: a.summary }),
          el("div", { class: "actions" }, [
            el("button", {
              id: "tallyql-ask-open", type: "button", text: "Open as query",
              title: "Put the metrics(query:) document and its variables into the editor",
              onclick: function () { openAsQuery(a.query); },
            }),
            close,
          ]),
          chart,
          rowsTable(a.result),
          a.result.truncated
            ? el("p", { class: "muted", text: "The first rows of " + a.result.totalRows + "." })
            : null,
        ]);
        loadChart(question, timeZone, chart, turn);
      })
      .catch(function (error) {
        if (turn === asked) {
          show([el("p", { class: "error", text: "The question failed: " + String(error.message || error) })]);
        }
      });
  }

  askForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = askInput.value.trim();
    if (question) {
      ask(question);
    }
  });

  var initial = storedKey();
  input.value = initial;
  if (!initial) {
    input.focus();
  }
  render(initial, true);
})();
