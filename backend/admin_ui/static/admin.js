// TokenLedger admin page. Plain JavaScript over the public admin API; no third-party code.
// The access token lives in sessionStorage (this tab only, never a cookie); "Log out" clears it.
// The API, session, formatting, date-range and table helpers are common.js's, shared with me.js.
import {
  $, ApiError, applyPreset, cell, filterOptions, formatNumber, formatUsd, getData, humanize, isAdmin, markBusy,
  onSessionExpired, placeholder, rangeParams, reapplyPreset, renderModelTable, report, request, setUpDateRange,
  setUpSignIn, setViewZone, showAlert, showPager, showRange, showSignedIn, showSignIn, storedSession, timeElement,
  timeZoneNote,
} from "./common.js";

const HISTORY_PAGE_SIZE = 10;
const TOP_USERS = 10;
const CHART_SERIES = 6;
const COLORS = ["#1f5fbf", "#e07b00", "#2a9d5c", "#b23a48", "#7b4fb8", "#16879e", "#8a8f98"];

const compactFormat = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

const state = {
  preset: "30d", start: null, end: null, operation: "", provider: "", orgId: "", timeZone: "",
  metric: "totalTokens", stack: "model", user: null, historyPage: 1, loads: 0, view: "usage",
  // The signed-in admin's scope: { platform: true, orgs: Map(id → name) } for a platform admin,
  // { platform: false, orgName } for an organization admin (the server confines their every view).
  scope: null, sessions: 0,
};

function formatMetric(value) {
  return state.metric === "totalCost" ? formatUsd(value) : formatNumber(value);
}

// ---- the API -----------------------------------------------------------------------------

// The date range in the organization a platform admin chose: what every ledger view reads.
function scopeParams() {
  const params = rangeParams(state);
  if (state.orgId) params.orgId = state.orgId;
  if (state.timeZone) params.timeZone = state.timeZone;
  return params;
}

// The zone the views count days in, as the server chooses it: the one a platform admin picked,
// else the organization's (UTC for all organizations).
function viewZone() {
  if (!state.scope) return "UTC";
  if (!state.scope.platform) return state.scope.zone;
  return state.timeZone || (state.orgId && state.scope.zones.get(state.orgId)) || "UTC";
}

function applyZone() {
  setViewZone(viewZone());
  reapplyPreset(state);
  $("tz-note").textContent = timeZoneNote("the chart");
}

function filterParams() {
  const params = scopeParams();
  if (state.operation) params.operation = state.operation;
  if (state.provider) params.provider = state.provider;
  return params;
}

// ---- session -----------------------------------------------------------------------------

function endSession(message) {
  state.sessions += 1;
  state.user = null;
  clearScope();
  setView("usage");
  $("dashboard-view").hidden = true;
  $("user-panel").hidden = true;
  showSignIn(message);
}

// Platform admins and organization admins (isAdmin) may use the page.
const NOT_AN_ADMIN = "this account is not an admin of the platform or of an organization. " +
  "The dashboard is for admins only; your own calls are on the My usage page (/me/).";

// `account` is the user the sign-in returned; after a reload it is read again from /auth/me,
// so a changed role or membership counts at once.
async function startSession(email, account) {
  const session = ++state.sessions;
  showSignedIn($("dashboard-view"), email);
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
  if (session === state.sessions) applyPreset(state, state.preset, refresh);
}

// Only an admin's sign-in is kept.
function acceptAdmin(user) {
  if (!isAdmin(user)) throw new ApiError(403, `Signed in as ${user.email}, but ${NOT_AN_ADMIN}`);
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
  state.timeZone = "";
  if (platform) {
    state.scope = { platform, orgs: new Map(orgs.map((org) => [org.id, org.name])),
                    zones: new Map(orgs.map((org) => [org.id, org.timeZone || "UTC"])) };
    $("org-filter").replaceChildren(new Option("All organizations", ""),
      ...orgs.map((org) => new Option(`${org.name} (${org.timeZone || "UTC"})`, org.id)));
    $("org-filter").value = "";
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    $("zone-filter").replaceChildren(new Option("The organization's", ""), new Option("UTC", "UTC"),
      ...zones.filter((zone) => zone !== "UTC").map((zone) => new Option(zone, zone)));
    $("zone-filter").value = "";
  } else {
    const own = orgs.find((org) => org.id === user.orgId) || orgs[0];
    state.scope = { platform, orgName: own ? own.name : "", zone: (own && own.timeZone) || "UTC" };
    $("org-name").textContent = own ? own.name : "your organization";
    $("org-zone").textContent = state.scope.zone;
  }
  applyZone();
  $("org-picker").hidden = !platform;
  $("zone-picker").hidden = !platform;
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
  applyZone();
  // One user's figures are per organization too; the list they were picked from is gone.
  closeUser();
  refresh();
}

// ---- filters -----------------------------------------------------------------------------

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
    button.textContent = key ? humanize(key) : "All operations";
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
  filterOptions($("provider-filter"), "All providers", providers, state.provider);
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
  showRange(state);
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
  const projection = dashboard.projection;
  // Where this month is heading: the month so far plus the last 7 days' daily average for the rest.
  $("projection-note").textContent = projection
    ? `At this pace ${projection.month} ends at ${formatNumber(projection.projected.tokens)} tokens and ` +
      `${formatUsd(projection.projected.cost)} (${formatNumber(projection.monthToDate.tokens)} so far; ` +
      `month of ${projection.timeZone}).`
    : "";
}

function renderBreakdown(rows) {
  renderModelTable($("breakdown-table"), rows, EMPTY_MESSAGE);
}

function renderTopUsers(rows) {
  const table = $("top-users-table");
  if (!rows.length) return placeholder(table, 5, EMPTY_MESSAGE);
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
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
  markBusy(panel, true);
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
    markBusy(panel, false);
  }
}

function renderHistory(history) {
  const table = $("history-table");
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  if (!history.data.length) placeholder(table, 7, "No calls by this user for this range and filter.");
  for (const record of history.data) {
    const row = tbody.insertRow();
    row.insertCell().append(timeElement(record.timestamp));
    cell(row, humanize(record.operation));
    cell(row, `${record.modelName} (${record.provider})`);
    cell(row, formatNumber(record.promptTokens), true);
    cell(row, formatNumber(record.completionTokens), true);
    cell(row, formatNumber(record.totalTokens), true);
    cell(row, formatUsd(record.cost), true);
  }
  showPager(history);
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
  badge.textContent = verdict ? humanize(verdict) : "not compared";
  return badge;
}

async function loadReconciliation() {
  const load = ++state.loads;
  const view = $("reconciliation-view");
  markBusy(view, true);
  showRange(state);
  const params = rangeParams(state);
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
    if (load === state.loads) markBusy(view, false);
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
  const table = $("reconciliation-table");
  if (!results.length) {
    return placeholder(table, 9, "No reconciliation results for this range and provider. Each day is reconciled " +
      "once it has settled; run scripts/reconcile.py --date YYYY-MM-DD for another day.");
  }
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
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
    const notes = [result.reason, result.explanation];
    if (result.final === false) notes.push("Provisional: the day has not settled yet.");
    if (result.midnight) {
      const moved = result.midnight.movedOut.length + result.midnight.movedIn.length;
      notes.push(result.midnight.datedBy === "completion"
        ? `${moved} call${moved === 1 ? "" : "s"} crossed midnight (counted on the day ${moved === 1 ? "it" : "they"} completed).`
        : "Calls that crossed midnight counted on the day they started, as the provider dated them.");
    }
    for (const note of notes.filter(Boolean)) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = note;
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

function init() {
  onSessionExpired(endSession);
  setUpSignIn(startSession, acceptAdmin);
  $("logout").addEventListener("click", () => endSession("You have logged out."));
  setUpDateRange(state, refresh);
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
  $("zone-filter").addEventListener("change", (event) => {
    state.timeZone = event.target.value;
    applyZone();
    refresh();
  });
  $("user-close").addEventListener("click", closeUser);
  $("history-prev").addEventListener("click", () => loadUser(state.user, state.historyPage - 1));
  $("history-next").addEventListener("click", () => loadUser(state.user, state.historyPage + 1));
  $("tz-note").textContent = timeZoneNote("the chart");

  const { token, email } = storedSession();
  if (token && email) {
    startSession(email);
  } else {
    $("login-email").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
