// TokenLedger admin page. Plain JavaScript over the public admin API; no third-party code.
// The access token lives in sessionStorage (this tab only, never a cookie); "Log out" clears it.
"use strict";

const TOKEN_KEY = "tokenledger.accessToken";
const EMAIL_KEY = "tokenledger.email";
const HISTORY_PAGE_SIZE = 10;
const TOP_USERS = 10;
const CHART_SERIES = 6;
const COLORS = ["#1f5fbf", "#e07b00", "#2a9d5c", "#b23a48", "#7b4fb8", "#16879e", "#8a8f98"];

const numberFormat = new Intl.NumberFormat("en-US");
const compactFormat = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

const state = {
  preset: "30d", start: null, end: null, operation: "", provider: "", orgId: "",
  metric: "totalTokens", stack: "model", user: null, historyPage: 1, loads: 0, view: "usage",
  // The signed-in admin's scope: { platform: true, orgs: Map(id → name) } for a platform admin,
  // { platform: false, orgName } for an organization admin (the server confines their every view).
  scope: null, sessions: 0,
};

const $ = (id) => document.getElementById(id);

// ---- formatting --------------------------------------------------------------------------

function formatNumber(value) {
  return numberFormat.format(value);
}

// Dollars with cents from $1 up; smaller amounts keep 4, then 6 decimals so they never read $0.00.
function formatUsd(value) {
  const digits = value === 0 || Math.abs(value) >= 1 ? 2 : Math.abs(value) >= 0.01 ? 4 : 6;
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function formatMetric(value) {
  return state.metric === "totalCost" ? formatUsd(value) : formatNumber(value);
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, count) {
  const date = new Date(day + "T00:00:00Z");
  date.setUTCDate(date.getUTCDate() + count);
  return isoDay(date);
}

// Date ranges are whole UTC days, as the API counts them.
function presetRange(preset) {
  const today = isoDay(new Date());
  switch (preset) {
    case "today": return [today, today];
    case "7d": return [addDays(today, -6), today];
    case "month": return [today.slice(0, 8) + "01", today];
    default: return [addDays(today, -29), today];
  }
}

// ---- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    let text = body.message || response.statusText;
    if (body.errors && typeof body.errors === "object") {
      const details = Object.entries(body.errors).map(([field, problems]) =>
        `${field}: ${[].concat(problems).join(" ")}`);
      if (details.length) text += ` (${details.join("; ")})`;
    }
    return text;
  } catch (ignored) {
    return `The server answered ${response.status} ${response.statusText}`;
  }
}

async function request(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (networkError) {
    throw new ApiError(0, "The service cannot be reached. Check your connection and try again.");
  }
  if (!response.ok) {
    const message = await errorMessage(response);
    if (response.status === 401 && token) {
      endSession("Your session has expired. Please sign in again.");
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function getData(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  const response = await request(path + query);
  return (await response.json()).data;
}

function rangeParams() {
  return { startDate: state.start, endDate: state.end };
}

// The date range in the organization a platform admin chose: what every ledger view reads.
function scopeParams() {
  const params = rangeParams();
  if (state.orgId) params.orgId = state.orgId;
  return params;
}

function filterParams() {
  const params = scopeParams();
  if (state.operation) params.operation = state.operation;
  if (state.provider) params.provider = state.provider;
  return params;
}

// ---- session -----------------------------------------------------------------------------

function showAlert(message) {
  const alert = $("alert");
  alert.textContent = message;
  alert.hidden = !message;
}

// A 401 has already ended the session with its own message; anything else is shown as it came.
function report(failure) {
  if (failure.status !== 401) showAlert(failure.message);
}

function endSession(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  state.sessions += 1;
  state.user = null;
  clearScope();
  setView("usage");
  $("dashboard-view").hidden = true;
  $("session").hidden = true;
  $("user-panel").hidden = true;
  $("login-view").hidden = false;
  $("login-password").value = "";
  showAlert(message || "");
  $("login-email").focus();
}

// Platform admins (role admin) and organization admins (orgRole admin) may use the page.
function isAdmin(account) {
  return account.role === "admin" || account.orgRole === "admin";
}

const NOT_AN_ADMIN = "this account is not an admin of the platform or of an organization. " +
  "The dashboard is for admins only; ask an admin to promote your account.";

// `account` is the user the sign-in returned; after a reload it is read again from /auth/me,
// so a changed role or membership counts at once.
async function startSession(email, account) {
  const session = ++state.sessions;
  $("login-view").hidden = true;
  $("dashboard-view").hidden = false;
  $("dashboard-view").dataset.state = "loading";
  $("session").hidden = false;
  $("session-email").textContent = email;
  showAlert("");
  try {
    const user = account || await getData("/auth/me");
    if (session !== state.sessions) return;
    if (!isAdmin(user)) {
      endSession(`Signed in as ${user.email}, but ${NOT_AN_ADMIN}`);
      return;
    }
    await loadScope(user);
  } catch (failure) {
    if (session === state.sessions) {
      report(failure);
      $("dashboard-view").dataset.state = "ready";
    }
    return;
  }
  if (session === state.sessions) applyPreset(state.preset);
}

async function login(event) {
  event.preventDefault();
  const error = $("login-error");
  error.hidden = true;
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  if (!email || !password) {
    error.textContent = "Enter your email and password.";
    error.hidden = false;
    return;
  }
  $("login-submit").disabled = true;
  try {
    const response = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email, password }),
    });
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    const data = (await response.json()).data;
    if (!isAdmin(data.user)) {
      throw new ApiError(403, `Signed in as ${data.user.email}, but ${NOT_AN_ADMIN}`);
    }
    sessionStorage.setItem(TOKEN_KEY, data.accessToken);
    sessionStorage.setItem(EMAIL_KEY, data.user.email);
    $("login-password").value = "";
    startSession(data.user.email, data.user);
  } catch (failure) {
    error.textContent = failure instanceof ApiError ? failure.message : "Sign-in failed. Please try again.";
    error.hidden = false;
  } finally {
    $("login-submit").disabled = false;
  }
}

// ---- scope -------------------------------------------------------------------------------

// GET /admin/orgs answers every organization to a platform admin and only their own to an
// organization admin. Without it the page still works: the server confines the views anyway.
async function loadScope(user) {
  const platform = user.role === "admin";
  let orgs = [];
  let problem = "";
  try {
    orgs = await getData("/admin/orgs");
  } catch (failure) {
    if (failure.status === 401) throw failure;
    problem = `Organizations could not be loaded: ${failure.message}`;
  }
  state.orgId = "";
  $("scope-note").textContent = problem;
  $("scope-note").hidden = !problem;
  if (platform) {
    state.scope = { platform, orgs: new Map(orgs.map((org) => [org.id, org.name])) };
    $("org-filter").replaceChildren(new Option("All organizations", ""),
      ...orgs.map((org) => new Option(org.name, org.id)));
    $("org-filter").value = "";
  } else {
    const own = orgs.find((org) => org.id === user.orgId) || orgs[0];
    state.scope = { platform, orgName: own ? own.name : "" };
    $("org-name").textContent = own ? own.name : "your organization";
  }
  $("org-picker").hidden = !platform;
  $("org-label").hidden = platform;
  // Reconciliation compares the providers' reports for the whole service: platform admins only.
  $("view-tabs").hidden = !platform;
  $("scope").hidden = false;
}

function clearScope() {
  state.scope = null;
  state.orgId = "";
  $("org-filter").replaceChildren(new Option("All organizations", ""));
  $("org-name").textContent = "";
  $("scope").hidden = true;
  $("view-tabs").hidden = true;
}

// The organization the views are about, by name; "" for all of them.
function scopeName() {
  if (!state.scope) return "";
  if (!state.scope.platform) return state.scope.orgName;
  return state.orgId ? state.scope.orgs.get(state.orgId) || state.orgId : "";
}

function chooseOrg(orgId) {
  state.orgId = orgId;
  // One user's figures are per organization too; the list they were picked from is gone.
  closeUser();
  refresh();
}

// ---- filters -----------------------------------------------------------------------------

function applyPreset(preset) {
  state.preset = preset;
  for (const button of document.querySelectorAll(".preset")) {
    button.setAttribute("aria-pressed", String(button.dataset.preset === preset));
  }
  const custom = $("custom-range");
  if (preset === "custom") {
    custom.hidden = false;
    $("custom-start").value = state.start || presetRange("30d")[0];
    $("custom-end").value = state.end || presetRange("30d")[1];
    $("custom-start").focus();
    return;
  }
  custom.hidden = true;
  [state.start, state.end] = presetRange(preset);
  refresh();
}

function applyCustomRange(event) {
  event.preventDefault();
  const start = $("custom-start").value;
  const end = $("custom-end").value;
  if (!start || !end) {
    showAlert("Choose both a start and an end date.");
    return;
  }
  if (start > end) {
    showAlert("The start date must not be after the end date.");
    return;
  }
  showAlert("");
  state.start = start;
  state.end = end;
  refresh();
}

function renderOperationTabs(operations) {
  const tabs = $("operation-tabs");
  // The tabs are rebuilt on every load; a keyboard user keeps focus on the tab they chose.
  const focused = tabs.contains(document.activeElement) ? document.activeElement.dataset.operation : null;
  tabs.replaceChildren();
  const keys = ["", ...operations];
  if (state.operation && !keys.includes(state.operation)) keys.push(state.operation);
  for (const key of keys) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tab";
    button.dataset.operation = key;
    button.textContent = key ? key.replaceAll("_", " ") : "All operations";
    button.setAttribute("aria-pressed", String(key === state.operation));
    button.addEventListener("click", () => {
      state.operation = key;
      refresh();
    });
    tabs.append(button);
    if (key === focused) button.focus();
  }
}

function renderProviderOptions(providers) {
  const select = $("provider-filter");
  const keys = [...providers];
  if (state.provider && !keys.includes(state.provider)) keys.push(state.provider);
  select.replaceChildren(new Option("All providers", ""), ...keys.map((key) => new Option(key, key)));
  select.value = state.provider;
}

// ---- loading -----------------------------------------------------------------------------

function setBusy(busy) {
  for (const id of ["cards", "chart-panel", "breakdown-panel", "top-users-panel"]) {
    $(id).setAttribute("aria-busy", String(busy));
  }
  $("dashboard-view").dataset.state = busy ? "loading" : "ready";
}

async function refresh() {
  if (state.view === "reconciliation") return loadReconciliation();
  const load = ++state.loads;
  setBusy(true);
  $("range-label").textContent = state.start === state.end
    ? `${state.start} (UTC day)` : `${state.start} to ${state.end} (whole UTC days)`;
  const filters = filterParams();
  try {
    const [operations, providers, dashboard, series, models, topUsers] = await Promise.all([
      getData("/admin/openai/breakdown", { ...scopeParams(), by: "operation" }),
      getData("/admin/openai/breakdown", { ...scopeParams(), by: "provider" }),
      getData("/admin/openai/dashboard", filters),
      getData("/admin/openai/timeseries", { ...filters, bucket: "day", groupBy: state.stack, limit: CHART_SERIES }),
      getData("/admin/openai/breakdown", { ...filters, by: "model" }),
      getData("/admin/openai/top-users", { ...filters, limit: TOP_USERS }),
    ]);
    if (load !== state.loads) return;
    renderOperationTabs(operations.map((row) => row.key));
    renderProviderOptions(providers.map((row) => row.key));
    renderCards(dashboard);
    renderChart(series);
    renderBreakdown(models);
    renderTopUsers(topUsers);
    showAlert("");
    if (state.user) await loadUser(state.user, 1);
  } catch (failure) {
    if (load === state.loads) report(failure);
  } finally {
    if (load === state.loads) setBusy(false);
  }
}

// ---- rendering ---------------------------------------------------------------------------

const EMPTY_MESSAGE = "No usage recorded for this range and filter. Try a wider date range, " +
  "or All operations and All providers.";

function renderCards(dashboard) {
  $("card-tokens").textContent = formatNumber(dashboard.totalTokens);
  $("card-cost").textContent = formatUsd(dashboard.totalCost);
  $("card-requests").textContent = formatNumber(dashboard.totalRequests);
  $("card-users").textContent = formatNumber(dashboard.uniqueUsers);
  // Calls of requests that failed after the provider answered are billed too, so they count above.
  $("failed-note").textContent = dashboard.failedRequests
    ? `Of these, ${formatNumber(dashboard.failedRequests)} calls of failed requests cost ` +
      `${formatUsd(dashboard.failedCost)} (billed all the same).`
    : "No calls of failed requests in this range.";
}

function emptyRow(tbody, columns, message) {
  const row = tbody.insertRow();
  const cell = row.insertCell();
  cell.colSpan = columns;
  cell.className = "empty";
  cell.textContent = message;
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function renderBreakdown(rows) {
  const tbody = $("breakdown-table").tBodies[0];
  tbody.replaceChildren();
  if (!rows.length) return emptyRow(tbody, 6, EMPTY_MESSAGE);
  for (const item of rows) {
    const row = tbody.insertRow();
    cell(row, item.key);
    cell(row, item.provider);
    cell(row, formatNumber(item.totalRequests), true);
    cell(row, formatNumber(item.totalTokens), true);
    cell(row, formatUsd(item.totalCost), true);
    const share = cell(row, `${(item.share * 100).toFixed(1)}%`, true);
    const bar = document.createElement("span");
    bar.className = "share";
    bar.style.width = `${Math.max(2, Math.round(item.share * 60))}px`;
    share.prepend(bar);
  }
}

function renderTopUsers(rows) {
  const tbody = $("top-users-table").tBodies[0];
  tbody.replaceChildren();
  if (!rows.length) return emptyRow(tbody, 5, EMPTY_MESSAGE);
  rows.forEach((item, index) => {
    const row = tbody.insertRow();
    cell(row, String(index + 1));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = item.userEmail;
    button.dataset.userId = item._id;
    button.addEventListener("click", () => openUser({ id: item._id, email: item.userEmail }));
    row.insertCell().append(button);
    cell(row, formatNumber(item.totalRequests), true);
    cell(row, formatNumber(item.totalTokens), true);
    cell(row, formatUsd(item.totalCost), true);
  });
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((f) => f * magnitude >= value);
  return step * magnitude;
}

function shortDay(period) {
  const [, month, day] = period.split("-");
  return `${Number(month)}/${Number(day)}`;
}

// A stacked bar per day, one colour per series (model or provider), drawn as SVG.
function renderChart(data) {
  const chart = $("chart");
  const legend = $("chart-legend");
  chart.replaceChildren();
  legend.replaceChildren();
  const metric = state.metric;
  const series = data.series.filter((s) => s.totals.totalRequests > 0);
  if (!series.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = EMPTY_MESSAGE;
    chart.append(empty);
    return;
  }
  const periods = data.periods;
  const stacks = periods.map((_, i) => series.reduce((sum, s) => sum + s.points[i][metric], 0));
  const top = niceMax(Math.max(...stacks));
  // Drawn at the container's width, so the labels keep their size on a phone.
  const width = Math.max(300, Math.round(chart.clientWidth || 800));
  const height = 260, left = 64, right = 8, bottom = 28, topPad = 10;
  const plotWidth = width - left - right, plotHeight = height - topPad - bottom;
  const band = plotWidth / periods.length;
  const barWidth = Math.max(1, band * 0.72);
  const y = (value) => topPad + plotHeight - (value / top) * plotHeight;

  const label = `${metric === "totalCost" ? "Cost" : "Tokens"} per day by ${data.groupBy}, ` +
    `${data.startDate} to ${data.endDate}; total ${formatMetric(stacks.reduce((a, b) => a + b, 0))}`;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (top * tick) / 4;
    root.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "axis" }));
    const text = metric === "totalCost" ? formatUsd(value) : compactFormat.format(value);
    root.append(svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, text));
  }
  const every = Math.ceil(periods.length / Math.max(3, Math.floor(plotWidth / 64)));
  periods.forEach((period, i) => {
    const x = left + i * band + (band - barWidth) / 2;
    let base = 0;
    series.forEach((s, index) => {
      const value = s.points[i][metric];
      if (value <= 0) return;
      const rect = svg("rect", {
        x, width: barWidth, y: y(base + value), height: Math.max(0.5, y(base) - y(base + value)),
        fill: COLORS[index % COLORS.length],
      });
      rect.append(svg("title", {}, `${period} · ${s.label}: ${formatMetric(value)}`));
      root.append(rect);
      base += value;
    });
    if (i % every === 0) {
      root.append(svg("text", { x: left + i * band + band / 2, y: height - 8, "text-anchor": "middle" },
        shortDay(period)));
    }
  });
  chart.append(root);
  series.forEach((s, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLORS[index % COLORS.length];
    item.append(swatch, `${s.label} (${formatMetric(s.totals[metric])})`);
    legend.append(item);
  });
}

// ---- one user ----------------------------------------------------------------------------

function closeUser() {
  state.user = null;
  $("user-panel").hidden = true;
}

function openUser(user) {
  state.user = user;
  $("user-panel").hidden = false;
  $("user-title").textContent = user.email;
  loadUser(user, 1).then(() => $("user-title").focus());
}

async function loadUser(user, page) {
  const panel = $("user-panel");
  panel.setAttribute("aria-busy", "true");
  panel.dataset.state = "loading";
  try {
    const filters = filterParams();
    const [stats, history] = await Promise.all([
      getData(`/admin/openai/user/${user.id}/stats`, filters),
      getData(`/admin/openai/user/${user.id}/history`, { ...filters, page, limit: HISTORY_PAGE_SIZE }),
    ]);
    if (state.user !== user) return;
    state.historyPage = page;
    $("user-tokens").textContent = formatNumber(stats.totalTokens);
    $("user-io").textContent = `${formatNumber(stats.promptTokens)} / ${formatNumber(stats.completionTokens)}`;
    $("user-cost").textContent = formatUsd(stats.totalCost);
    $("user-requests").textContent = formatNumber(stats.totalRequests);
    renderHistory(history);
  } catch (failure) {
    report(failure);
  } finally {
    panel.setAttribute("aria-busy", "false");
    panel.dataset.state = "ready";
  }
}

function renderHistory(history) {
  const tbody = $("history-table").tBodies[0];
  tbody.replaceChildren();
  if (!history.data.length) emptyRow(tbody, 7, "No calls by this user for this range and filter.");
  for (const record of history.data) {
    const row = tbody.insertRow();
    const when = row.insertCell();
    const time = document.createElement("time");
    time.dateTime = record.timestamp;
    time.title = `${record.timestamp} (UTC)`;
    time.textContent = timeFormat.format(new Date(record.timestamp));
    when.append(time);
    cell(row, record.operation.replaceAll("_", " "));
    cell(row, `${record.modelName} (${record.provider})`);
    cell(row, formatNumber(record.promptTokens), true);
    cell(row, formatNumber(record.completionTokens), true);
    cell(row, formatNumber(record.totalTokens), true);
    cell(row, formatUsd(record.cost), true);
  }
  const pages = Math.max(1, history.totalPages);
  $("history-page").textContent = `Page ${history.page} of ${pages} · ${formatNumber(history.total)} calls`;
  $("history-prev").disabled = history.page <= 1;
  $("history-next").disabled = history.page >= pages;
}

// ---- reconciliation ----------------------------------------------------------------------

// The counts compared, in column order; Anthropic reports no request count (null: not compared).
const RECONCILED_COUNTS = ["requests", "uncachedInputTokens", "cachedInputTokens", "cacheWriteTokens", "outputTokens"];
const MISMATCHES = ["ledger_short", "ledger_over"];

function setView(view) {
  state.view = view;
  for (const button of document.querySelectorAll(".view-tab")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  const reconciling = view === "reconciliation";
  $("usage-view").hidden = reconciling;
  $("reconciliation-view").hidden = !reconciling;
  // Organizations, operations and the CSV export are about the ledger alone (the providers report
  // for the whole service); dates and provider apply to both views.
  $("operation-tabs").hidden = reconciling;
  $("export-csv").hidden = reconciling;
  $("scope").hidden = reconciling || !state.scope;
}

function signed(value) {
  if (value === null || value === undefined) return "—";
  return value > 0 ? `+${formatNumber(value)}` : formatNumber(value);
}

function verdictBadge(verdict) {
  const badge = document.createElement("span");
  badge.className = `verdict verdict-${verdict || "none"}`;
  badge.textContent = verdict ? verdict.replaceAll("_", " ") : "not compared";
  return badge;
}

async function loadReconciliation() {
  const load = ++state.loads;
  const view = $("reconciliation-view");
  view.setAttribute("aria-busy", "true");
  view.dataset.state = "loading";
  $("range-label").textContent = state.start === state.end
    ? `${state.start} (UTC day)` : `${state.start} to ${state.end} (whole UTC days)`;
  const params = rangeParams();
  if (state.provider) params.provider = state.provider;
  try {
    const data = await getData("/admin/openai/reconciliation", params);
    if (load !== state.loads) return;
    const seen = [...$("provider-filter").options].map((option) => option.value).filter(Boolean);
    renderProviderOptions([...new Set([...seen, ...data.results.map((row) => row.provider)])]);
    renderReconciliation(data.results);
    showAlert("");
  } catch (failure) {
    if (load !== state.loads) return;
    if (failure.status === 403) showAlert("Reconciliation is for platform admins only.");
    else report(failure);
  } finally {
    if (load === state.loads) {
      view.setAttribute("aria-busy", "false");
      view.dataset.state = "ready";
    }
  }
}

function renderReconciliation(results) {
  const counts = {};
  for (const row of results) counts[row.verdict] = (counts[row.verdict] || 0) + 1;
  const mismatches = (counts.ledger_short || 0) + (counts.ledger_over || 0);
  $("reconciliation-summary").textContent = results.length
    ? `${mismatches} mismatch${mismatches === 1 ? "" : "es"}, ${counts.unavailable || 0} unavailable, ` +
      `${counts.match || 0} matched, ${counts.not_supported || 0} not supported.`
    : "";
  const tbody = $("reconciliation-table").tBodies[0];
  tbody.replaceChildren();
  if (!results.length) {
    return emptyRow(tbody, 9, "No reconciliation results for this range and provider. Each day is reconciled " +
      "once it has settled; run scripts/reconcile.py --date YYYY-MM-DD for another day.");
  }
  results.forEach((result, index) => {
    const row = tbody.insertRow();
    row.dataset.provider = result.provider;
    row.dataset.date = result.date;
    if (MISMATCHES.includes(result.verdict)) row.className = "mismatch";
    cell(row, result.date);
    cell(row, result.provider);
    row.insertCell().append(verdictBadge(result.verdict));
    for (const count of RECONCILED_COUNTS) {
      const td = cell(row, signed(result.difference && result.difference[count]), true);
      td.title = `ledger ${formatNumber(result.ledger[count])} · provider ` +
        (result.reported && result.reported[count] !== null ? formatNumber(result.reported[count]) : "—");
    }
    const details = row.insertCell();
    details.className = "details";
    if (result.reason) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = result.reason;
      details.append(reason);
    }
    if (result.models.length) {
      const toggle = document.createElement("button");
      toggle.type = "button";
      toggle.className = "link";
      toggle.textContent = `Models (${result.models.length})`;
      toggle.setAttribute("aria-expanded", "false");
      toggle.setAttribute("aria-controls", `reconciliation-models-${index}`);
      const drill = tbody.insertRow();
      drill.id = `reconciliation-models-${index}`;
      drill.className = "drill";
      drill.hidden = true;
      const holder = drill.insertCell();
      holder.colSpan = 9;
      holder.append(modelTable(result));
      toggle.addEventListener("click", () => {
        drill.hidden = !drill.hidden;
        toggle.setAttribute("aria-expanded", String(!drill.hidden));
      });
      details.append(toggle);
    }
  });
}

// One row per model: ledger / provider (difference) for each count.
function modelTable(result) {
  const table = document.createElement("table");
  table.className = "models";
  const head = table.createTHead().insertRow();
  for (const title of ["Model", "Verdict", "Requests", "Uncached input", "Cached input", "Cache writes", "Output"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = title;
    head.append(th);
  }
  const body = table.createTBody();
  for (const model of result.models) {
    const row = body.insertRow();
    cell(row, model.model);
    row.insertCell().append(verdictBadge(model.verdict));
    for (const count of RECONCILED_COUNTS) {
      const reported = model.reported ? model.reported[count] : null;
      const text = `${formatNumber(model.ledger[count])} / ${reported === null ? "—" : formatNumber(reported)}`;
      const difference = model.difference ? model.difference[count] : null;
      cell(row, difference ? `${text} (${signed(difference)})` : text, true);
    }
  }
  const note = table.createCaption();
  note.textContent = "ledger / provider (provider minus ledger)" +
    (result.requestsCompared ? "" : "; requests are not reported by this provider and not compared");
  return table;
}

// ---- export ------------------------------------------------------------------------------

// The server's file name with the organization's name in it, when the export is about one.
function exportName(name) {
  const org = scopeName();
  if (!org) return name;
  const slug = org.toLowerCase().replace(/[^a-z0-9]+/g, "-").slice(0, 60).replace(/^-+|-+$/g, "") || "org";
  const dot = name.lastIndexOf(".");
  return dot > 0 ? `${name.slice(0, dot)}-${slug}${name.slice(dot)}` : `${name}-${slug}`;
}

async function exportCsv() {
  const button = $("export-csv");
  button.disabled = true;
  button.textContent = "Exporting…";
  try {
    const response = await request(`/admin/openai/export?${new URLSearchParams({ ...filterParams(), format: "csv" })}`,
      { headers: { Accept: "text/csv" } });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = exportName(match ? match[1] : "token-usage.csv");
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (failure) {
    report(failure);
  } finally {
    button.disabled = false;
    button.textContent = "Export CSV";
  }
}

// ---- start -------------------------------------------------------------------------------

function timeZoneNote() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const offset = `${String(Math.floor(Math.abs(minutes) / 60)).padStart(2, "0")}:${String(Math.abs(minutes) % 60).padStart(2, "0")}`;
  return `Times are shown in your time zone (${zone}, UTC${sign}${offset}); hover a time for UTC. ` +
    "Date ranges and the chart count whole UTC days.";
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => endSession("You have logged out."));
  for (const button of document.querySelectorAll(".preset")) {
    button.addEventListener("click", () => applyPreset(button.dataset.preset));
  }
  $("custom-range").addEventListener("submit", applyCustomRange);
  $("provider-filter").addEventListener("change", (event) => {
    state.provider = event.target.value;
    refresh();
  });
  $("chart-metric").addEventListener("change", (event) => {
    state.metric = event.target.value;
    refresh();
  });
  $("chart-stack").addEventListener("change", (event) => {
    state.stack = event.target.value;
    refresh();
  });
  $("export-csv").addEventListener("click", exportCsv);
  for (const button of document.querySelectorAll(".view-tab")) {
    button.addEventListener("click", () => {
      setView(button.dataset.view);
      refresh();
    });
  }
  $("org-filter").addEventListener("change", (event) => chooseOrg(event.target.value));
  $("user-close").addEventListener("click", closeUser);
  $("history-prev").addEventListener("click", () => loadUser(state.user, state.historyPage - 1));
  $("history-next").addEventListener("click", () => loadUser(state.user, state.historyPage + 1));
  $("tz-note").textContent = timeZoneNote();

  const email = sessionStorage.getItem(EMAIL_KEY);
  if (sessionStorage.getItem(TOKEN_KEY) && email) {
    startSession(email);
  } else {
    $("login-email").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
