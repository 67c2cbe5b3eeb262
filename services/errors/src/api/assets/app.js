// billsync errors page: the admin API (/api/v1, see /api/v1/openapi.json) behind a few
// forms and tables. The bearer token lives in sessionStorage, so it is gone with the tab.
// Every value from the API is written with textContent, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "billsync.adminToken";
  const PAGE_SIZE = "50";
  const $ = (id) => document.getElementById(id);

  const state = {
    failuresCursor: null,
    runsCursor: null,
    runRecordsCursor: null,
    currentRun: null,
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // --- API --------------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + token() }, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401) {
      signOut("The admin token was refused. Check errors.admin_token and sign in again.");
      throw new ApiError(401, "the admin token was refused");
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        if (body && body.error) message = body.error;
      } catch (_) {
        // Not JSON: keep the status line.
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  async function getJson(path) {
    return (await api(path)).json();
  }

  async function postJson(path, body) {
    const response = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    return response.json();
  }

  function query(params) {
    const text = new URLSearchParams(params).toString();
    return text ? "?" + text : "";
  }

  // --- small DOM helpers ------------------------------------------------------------------

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  function actionButton(label, action, id, title) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "row-action";
    button.textContent = label;
    button.dataset.action = action;
    button.dataset.id = String(id);
    if (title) button.title = title;
    return button;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString();
  }

  function notice(message, isError) {
    const box = $("notice");
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.hidden = false;
  }

  function report(error) {
    if (error instanceof ApiError && error.status === 401) return;
    notice(error.message || String(error), true);
  }

  // --- sign in / out ----------------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("tabs").hidden = true;
    $("logout").hidden = true;
    $("failures-view").hidden = true;
    $("runs-view").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token").value = "";
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      await getJson("/api/v1/failures" + query({ limit: "1" }));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        // Reachable but not usable (database starting, token not configured): say so.
        sessionStorage.removeItem(TOKEN_KEY);
        $("login-error").textContent = error.message;
        $("login-error").hidden = false;
      }
      return;
    }
    showApp();
  }

  function showApp() {
    $("login").hidden = true;
    $("login-error").hidden = true;
    $("tabs").hidden = false;
    $("logout").hidden = false;
    showTab("failures");
  }

  function showTab(name) {
    const failures = name === "failures";
    $("failures-view").hidden = !failures;
    $("runs-view").hidden = failures;
    $("tab-failures").setAttribute("aria-current", failures ? "page" : "false");
    $("tab-runs").setAttribute("aria-current", failures ? "false" : "page");
    if (failures) {
      loadFailures(false).catch(report);
    } else {
      loadRuns(false).catch(report);
    }
  }

  // --- failures ---------------------------------------------------------------------------

  // The filter form as API parameters; datetime-local fields are local time.
  function filter() {
    const params = {};
    for (const [name, raw] of new FormData($("filters")).entries()) {
      const value = String(raw).trim();
      if (!value) continue;
      params[name] = name === "since" || name === "until" ? new Date(value).toISOString() : value;
    }
    return params;
  }

  function describeFilter(params) {
    const parts = Object.entries(params)
      .filter(([name]) => name !== "status")
      .map(([name, value]) => name + " = " + value);
    return parts.length ? " matching " + parts.join(", ") : "";
  }

  async function loadFailures(append) {
    const params = Object.assign(filter(), { limit: PAGE_SIZE });
    if (append && state.failuresCursor) params.cursor = state.failuresCursor;
    const page = await getJson("/api/v1/failures" + query(params));
    const body = $("failures").tBodies[0];
    if (!append) body.replaceChildren();
    for (const failure of page.items) body.appendChild(failureRow(failure));
    state.failuresCursor = page.next_cursor;
    $("failures-more").hidden = !page.next_cursor;
    $("failures-empty").hidden = body.rows.length > 0;
    const open = (params.status || "open") === "open";
    $("ignore-all").disabled = !open;
    $("ignore-all").title = open ? "" : "Only open failures can be ignored.";
    $("download-csv").title = "The CSV holds the open failures matching the filters (never ignored ones).";
  }

  function failureRow(failure) {
    const row = document.createElement("tr");
    row.dataset.id = String(failure.id);
    row.dataset.status = failure.status;
    row.appendChild(cell(when(failure.last_seen)));
    row.lastChild.title = "First seen " + when(failure.first_seen);
    row.appendChild(cell(failure.destination + " · " + failure.destination_connection));
    row.appendChild(cell(failure.source + " · " + failure.source_connection));
    row.appendChild(cell(failure.record_key));
    row.lastChild.title = failure.event_type + " (" + failure.event_id + ")";
    const http = failure.http_status ? " (HTTP " + failure.http_status + ")" : "";
    row.appendChild(cell(failure.error_class.replace(/_/g, " ") + http));
    row.appendChild(cell(failure.message, "message"));
    row.appendChild(cell(failure.count, "number"));
    const retried = failure.retry_count ? ", retried " + failure.retry_count + "×" : "";
    row.appendChild(cell(failure.status + retried, "status"));
    const actions = cell("");
    actions.appendChild(
      actionButton("Retry", "retry", failure.id, "Send this record again to " + failure.destination_connection + " only"),
    );
    if (failure.status === "open") {
      actions.appendChild(
        actionButton("Ignore", "ignore", failure.id, "Hide it and stop syncing this record until it changes"),
      );
    }
    actions.appendChild(actionButton("Details", "details", failure.id));
    row.appendChild(actions);
    return row;
  }

  async function onFailureAction(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.dataset.id;
    const row = button.closest("tr");
    const record = row ? row.cells[3].textContent : "";
    button.disabled = true;
    try {
      if (button.dataset.action === "ignore") {
        await postJson("/api/v1/failures/" + encodeURIComponent(id) + "/ignore");
        notice("Failure " + id + " (" + record + ") ignored: it will not sync to this destination again until it changes.");
        if (row) row.remove();
        $("failures-empty").hidden = $("failures").tBodies[0].rows.length > 0;
      } else if (button.dataset.action === "retry") {
        await postJson("/api/v1/failures/" + encodeURIComponent(id) + "/retry");
        notice("Retry of failure " + id + " (" + record + ") sent; it is marked resolved once it syncs.");
        button.textContent = "Retry sent";
        if (row) {
          row.classList.add("done");
          row.dataset.retried = "true";
        }
        return; // keep the button disabled: one click, one retry
      } else if (button.dataset.action === "details") {
        const detail = await getJson("/api/v1/failures/" + encodeURIComponent(id));
        $("detail-id").textContent = id + " · " + detail.record_key + " → " + detail.destination_connection;
        $("detail-body").textContent = JSON.stringify(detail, null, 2);
        $("detail").hidden = false;
        $("detail").scrollIntoView();
      }
    } catch (error) {
      report(error);
    }
    button.disabled = false;
  }

  async function ignoreAll() {
    const params = filter();
    if (!window.confirm("Ignore every open failure" + describeFilter(params) + "? Those records stop syncing until they change.")) return;
    try {
      const answer = await postJson("/api/v1/failures/ignore", params);
      notice(answer.ignored + " failure(s) ignored.");
      await loadFailures(false);
    } catch (error) {
      report(error);
    }
  }

  async function retryAll() {
    const params = filter();
    const status = params.status || "open";
    if (!window.confirm("Retry every " + status + " failure" + describeFilter(params) + "? Each goes back to its own destination only.")) return;
    try {
      const answer = await postJson("/api/v1/failures/retry", params);
      const skipped = answer.skipped ? "; " + answer.skipped + " could not be read and were skipped" : "";
      notice(answer.retried + " retr" + (answer.retried === 1 ? "y" : "ies") + " sent" + skipped + ".");
      await loadFailures(false);
    } catch (error) {
      report(error);
    }
  }

  async function downloadCsv() {
    const params = filter();
    delete params.status; // the CSV always holds open failures only
    try {
      const response = await api("/api/v1/failures.csv" + query(params));
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "billsync-sync-errors.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      notice("CSV downloaded (open failures" + describeFilter(params) + "; ignored ones are never included).");
    } catch (error) {
      report(error);
    }
  }

  // --- runs -------------------------------------------------------------------------------

  async function loadRuns(append) {
    const params = { limit: PAGE_SIZE };
    if (append && state.runsCursor) params.cursor = state.runsCursor;
    const page = await getJson("/api/v1/runs" + query(params));
    const body = $("runs").tBodies[0];
    if (!append) body.replaceChildren();
    for (const run of page.items) {
      const row = document.createElement("tr");
      row.dataset.run = run.run_id;
      const name = cell("");
      const open = actionButton(run.run_id, "run", run.run_id, "Show this run's records");
      open.classList.add("quiet");
      name.appendChild(open);
      row.appendChild(name);
      row.appendChild(cell(when(run.started_at)));
      row.appendChild(cell(when(run.last_outcome_at)));
      for (const count of [run.total, run.synced, run.failed, run.skipped]) {
        row.appendChild(cell(count, "number"));
      }
      body.appendChild(row);
    }
    state.runsCursor = page.next_cursor;
    $("runs-more").hidden = !page.next_cursor;
    $("runs-empty").hidden = body.rows.length > 0;
  }

  async function loadRun(runId, append) {
    const params = { limit: PAGE_SIZE };
    const status = $("run-status").value;
    if (status) params.status = status;
    if (append && state.runRecordsCursor) params.cursor = state.runRecordsCursor;
    const run = await getJson("/api/v1/runs/" + encodeURIComponent(runId) + query(params));
    state.currentRun = runId;
    $("run-detail-id").textContent =
      run.run_id + ": " + run.synced + " synced, " + run.failed + " failed, " + run.skipped + " skipped";
    const body = $("run-records").tBodies[0];
    if (!append) body.replaceChildren();
    for (const record of run.records) {
      const row = document.createElement("tr");
      row.appendChild(cell(record.record_key));
      row.appendChild(cell(record.destination + " · " + record.destination_connection));
      row.appendChild(cell(record.status));
      row.appendChild(cell(record.reason, "message"));
      row.appendChild(cell(when(record.at)));
      body.appendChild(row);
    }
    state.runRecordsCursor = run.next_cursor;
    $("run-records-more").hidden = !run.next_cursor;
    $("run-detail").hidden = false;
  }

  // --- wiring -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("logout").addEventListener("click", () => signOut(""));
    $("tab-failures").addEventListener("click", () => showTab("failures"));
    $("tab-runs").addEventListener("click", () => showTab("runs"));
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      $("notice").hidden = true;
      loadFailures(false).catch(report);
    });
    $("clear-filters").addEventListener("click", () => {
      $("filters").reset();
      loadFailures(false).catch(report);
    });
    $("failures").addEventListener("click", onFailureAction);
    $("failures-more").addEventListener("click", () => loadFailures(true).catch(report));
    $("ignore-all").addEventListener("click", ignoreAll);
    $("retry-all").addEventListener("click", retryAll);
    $("download-csv").addEventListener("click", downloadCsv);
    $("detail-close").addEventListener("click", () => {
      $("detail").hidden = true;
    });
    $("runs").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action='run']");
      if (button) loadRun(button.dataset.id, false).catch(report);
    });
    $("runs-more").addEventListener("click", () => loadRuns(true).catch(report));
    $("run-status").addEventListener("change", () => {
      if (state.currentRun) loadRun(state.currentRun, false).catch(report);
    });
    $("run-records-more").addEventListener("click", () => {
      if (state.currentRun) loadRun(state.currentRun, true).catch(report);
    });

    if (token()) {
      showApp();
    } else {
      signOut("");
    }
  });
})();
