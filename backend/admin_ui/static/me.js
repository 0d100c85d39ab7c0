// TokenLedger "My usage" page: the signed-in user's own budget, totals, breakdowns and calls, read
// from /api/me/usage*. Plain JavaScript, no third-party code; everything shown is set as text.
// The API, session (the admin page's, in sessionStorage), formatting, date-range and table helpers
// are common.js's, shared with admin.js.
import {
  $, applyPreset, getEnvelope, cell, filterOptions, formatNumber, formatUsd, getData, humanize, isAdmin, markBusy,
  onSessionExpired, placeholder, rangeParams, renderModelTable, report, setUpDateRange, setUpSignIn,
  setViewZone, showAlert, showPager, showRange, showSignedIn, showSignIn, storedSession, timeElement, timeZoneNote,
} from "./common.js";

const HISTORY_PAGE_SIZE = 10;
const COST_DECIMALS = 10;
const WINDOW_NAMES = { day: "Today", month: "This month" };

const state = {
  preset: "30d", start: null, end: null, model: "", tag: "", operation: "", historyPage: 1,
  loads: 0, historyLoads: 0, sessions: 0,
};

// ---- session -----------------------------------------------------------------------------

// Nothing of the previous account stays in the page for the next one to see.
function clearFigures() {
  $("budget-windows").replaceChildren(note("Loading…"));
  for (const id of ["card-tokens", "card-cost", "card-requests"]) $(id).textContent = "…";
  $("card-io").textContent = "";
  placeholder($("models-table"), 6, "Loading…");
  placeholder($("tags-table"), 4, "Loading…");
  placeholder($("operations-table"), 4, "Loading…");
  placeholder($("history-table"), 9, "Loading…");
  $("history-page").textContent = "";
  $("history-prev").disabled = true;
  $("history-next").disabled = true;
  state.model = "";
  state.tag = "";
  state.operation = "";
  filterOptions($("history-model"), "All models", []);
  filterOptions($("history-tag"), "All tags", []);
  filterOptions($("history-operation"), "All types", []);
}

function endSession(message) {
  state.sessions += 1;
  state.loads += 1;
  state.historyLoads += 1;
  clearFigures();
  $("usage-view").hidden = true;
  $("usage-view").dataset.state = "ready";
  $("admin-link").hidden = true;
  showSignIn(message);
}

// `account` is the user the sign-in returned; after a reload it is read again from /auth/me.
async function startSession(email, account) {
  const session = ++state.sessions;
  showSignedIn($("usage-view"), email);
  let user = account;
  try {
    user = user || await getData("/auth/me");
  } catch (failure) {
    if (session === state.sessions) {
      report(failure);
      $("usage-view").dataset.state = "ready";
    }
    return;
  }
  if (session !== state.sessions) return;
  $("session-email").textContent = user.email;
  $("admin-link").hidden = !isAdmin(user);
  // Your days are your organization's: its zone (in /api/me/usage) comes first, then the ranges.
  try {
    const usage = await getEnvelope("/api/me/usage");
    setViewZone(usage.timeZone);
  } catch (failure) {
    if (failure.status === 401) return;
  }
  if (session !== state.sessions) return;
  $("tz-note").textContent = timeZoneNote("budgets");
  applyPreset(state, state.preset, refresh);
}

// ---- loading -----------------------------------------------------------------------------

function setBusy(busy) {
  for (const id of ["budget-panel", "cards", "models-panel", "tags-panel"]) {
    $(id).setAttribute("aria-busy", String(busy));
  }
  $("usage-view").dataset.state = busy ? "loading" : "ready";
}

// Budget, breakdowns and history load side by side; one that fails says so in its own place
// (and in the alert) without hiding the others.
async function refresh() {
  const load = ++state.loads;
  setBusy(true);
  showAlert("");
  showRange(state);
  const results = await Promise.allSettled([loadBudget(load), loadBreakdowns(load), loadHistory(1)]);
  if (load !== state.loads) return;
  const failed = results.find((result) => result.status === "rejected" && result.reason);
  if (failed) report(failed.reason);
  setBusy(false);
}

async function loadBudget(load) {
  try {
    const usage = await getData("/api/me/usage");
    if (load !== state.loads) return;
    renderBudget(usage.windows);
    renderProjection(usage.projection);
  } catch (failure) {
    if (load !== state.loads) return;
    $("budget-windows").replaceChildren(note(`Your budget could not be loaded: ${failure.message}`, "error"));
    throw failure;
  }
}

async function loadBreakdowns(load) {
  try {
    const [models, tags, operations] = await Promise.all([
      getData("/api/me/usage/breakdown", { ...rangeParams(state), by: "model" }),
      getData("/api/me/usage/breakdown", { ...rangeParams(state), by: "tag" }),
      getData("/api/me/usage/breakdown", { ...rangeParams(state), by: "operation" }),
    ]);
    if (load !== state.loads) return;
    renderTotals(models);
    renderModels(models);
    renderTags(tags);
    renderOperations(operations);
    filterOptions($("history-model"), "All models", models.map((row) => row.key), state.model);
    filterOptions($("history-tag"), "All tags", tags.map((row) => row.key), state.tag);
    filterOptions($("history-operation"), "All types", operations.map((row) => row.key), state.operation);
  } catch (failure) {
    if (load !== state.loads) return;
    const message = `Could not be loaded: ${failure.message}`;
    for (const id of ["card-tokens", "card-cost", "card-requests"]) $(id).textContent = "—";
    $("card-io").textContent = "";
    placeholder($("models-table"), 6, message, "error");
    placeholder($("tags-table"), 4, message, "error");
    placeholder($("operations-table"), 4, message, "error");
    throw failure;
  }
}

async function loadHistory(page) {
  const load = ++state.historyLoads;
  const panel = $("history-panel");
  markBusy(panel, true);
  const params = { ...rangeParams(state), page, limit: HISTORY_PAGE_SIZE };
  if (state.model) params.model = state.model;
  if (state.tag) params.tag = state.tag;
  if (state.operation) params.operation = state.operation;
  try {
    const history = await getData("/api/me/usage/history", params);
    if (load !== state.historyLoads) return;
    state.historyPage = history.page;
    renderHistory(history);
  } catch (failure) {
    if (load !== state.historyLoads) return;
    placeholder($("history-table"), 9, `Your calls could not be loaded: ${failure.message}`, "error");
    $("history-page").textContent = "";
    $("history-prev").disabled = true;
    $("history-next").disabled = true;
    throw failure;
  } finally {
    if (load === state.historyLoads) markBusy(panel, false);
  }
}

// A history load of its own (a page or a filter); its failure goes to the alert.
function reloadHistory(page) {
  showAlert("");
  loadHistory(page).catch(report);
}

// ---- rendering ---------------------------------------------------------------------------

function note(text, className = "muted") {
  const paragraph = document.createElement("p");
  paragraph.className = className;
  paragraph.textContent = text;
  return paragraph;
}

// Each cell names its column, for the narrow layout where a row reads as a card (admin.css .stack).
function labelCells(table) {
  const names = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((td, index) => { td.dataset.label = names[index] || ""; });
  }
}

// "574 used of 100,000 · 99,426 left", or "574 used · no limit"; a meter when there is a limit.
function budgetLine(list, window, kind, label, format) {
  const term = document.createElement("dt");
  term.textContent = label;
  const detail = document.createElement("dd");
  const text = document.createElement("span");
  text.id = `budget-${window.window}-${kind}`;
  const limit = window.limits[kind];
  const used = window.used[kind];
  text.textContent = limit === null || limit === undefined
    ? `${format(used)} used · no limit`
    : `${format(used)} used of ${format(limit)} · ${format(window.remaining[kind])} left`;
  detail.append(text);
  if (limit) {
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = limit;
    meter.value = Math.min(used, limit);
    meter.low = limit * 0.8;
    meter.high = limit * 0.95;
    meter.optimum = 0;
    meter.setAttribute("aria-label", `${label} used of the limit`);
    detail.append(meter);
  }
  list.append(term, detail);
}

function renderBudget(windows) {
  const holder = $("budget-windows");
  holder.replaceChildren();
  if (!windows.length) holder.append(note("No budget windows."));
  for (const window of windows) {
    const card = document.createElement("div");
    card.className = "card";
    card.id = `budget-${window.window}`;
    const title = document.createElement("h4");
    title.textContent = `${WINDOW_NAMES[window.window] || humanize(window.window)} (${window.period}, ${window.timeZone})`;
    const list = document.createElement("dl");
    list.className = "budget-lines";
    budgetLine(list, window, "tokens", "Tokens", formatNumber);
    budgetLine(list, window, "usd", "Cost", formatUsd);
    const resets = note("Resets ", "muted small-print card-note");
    resets.append(timeElement(window.resetsAt));
    card.append(title, list, resets);
    holder.append(card);
  }
}

// Where the month is heading: the month so far plus the last 7 days' daily average for the rest.
function renderProjection(projection) {
  const line = $("projection");
  if (!projection) {
    line.textContent = "";
    return;
  }
  line.textContent = `At this pace you reach ${formatNumber(projection.projected.tokens)} tokens ` +
    `(${formatUsd(projection.projected.cost)}) by the end of ${projection.month} (${projection.timeZone}): ` +
    `${formatNumber(projection.monthToDate.tokens)} so far, about ${formatNumber(Math.round(projection.dailyAverage.tokens))} ` +
    `a day over the last 7 days.`;
}

// The totals are the by-model rows summed: every call has exactly one model.
function renderTotals(models) {
  const sum = (field) => models.reduce((total, row) => total + row[field], 0);
  const cost = Math.round(sum("totalCost") * 10 ** COST_DECIMALS) / 10 ** COST_DECIMALS;
  $("card-tokens").textContent = formatNumber(sum("totalTokens"));
  $("card-io").textContent = `${formatNumber(sum("promptTokens"))} input · ${formatNumber(sum("completionTokens"))} output`;
  $("card-cost").textContent = formatUsd(cost);
  $("card-requests").textContent = formatNumber(sum("totalRequests"));
}

const NO_CALLS = "No calls in this range. Try a wider date range.";

function renderModels(rows) {
  const table = $("models-table");
  renderModelTable(table, rows, NO_CALLS);
  if (rows.length) labelCells(table);
}

function renderTags(rows) {
  const table = $("tags-table");
  if (!rows.length) {
    return placeholder(table, 4, 'No tagged calls in this range. Send "tags" with a request to see it here.');
  }
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  for (const item of rows) {
    const row = tbody.insertRow();
    row.insertCell().append(tagChip(item.key));
    cell(row, formatNumber(item.totalRequests), true);
    cell(row, formatNumber(item.totalTokens), true);
    cell(row, formatUsd(item.totalCost), true);
  }
}

// Generations and the embeddings RAG makes (of your saved cases, and of each RAG prompt), each its own type.
function renderOperations(rows) {
  const table = $("operations-table");
  if (!rows.length) return placeholder(table, 4, NO_CALLS);
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  for (const item of rows) {
    const row = tbody.insertRow();
    cell(row, humanize(item.key));
    cell(row, formatNumber(item.totalRequests), true);
    cell(row, formatNumber(item.totalTokens), true);
    cell(row, formatUsd(item.totalCost), true);
  }
}

function tagChip(tag) {
  const chip = document.createElement("span");
  chip.className = "tag";
  chip.textContent = tag;
  return chip;
}

function renderHistory(history) {
  const table = $("history-table");
  if (!history.data.length) {
    placeholder(table, 9, state.model || state.tag || state.operation
      ? "No calls in this range match the chosen model, tag and type." : NO_CALLS);
  } else {
    const tbody = table.tBodies[0];
    tbody.replaceChildren();
    for (const record of history.data) {
      const row = tbody.insertRow();
      row.insertCell().append(timeElement(record.timestamp));
      cell(row, `${record.modelName} (${record.provider})`);
      cell(row, humanize(record.operation));
      const outcome = cell(row, humanize(record.outcome));
      if (record.outcome !== "ok") outcome.classList.add("outcome-failed");
      cell(row, formatNumber(record.promptTokens), true);
      cell(row, formatNumber(record.completionTokens), true);
      cell(row, formatNumber(record.totalTokens), true);
      cell(row, formatUsd(record.cost), true);
      const tags = row.insertCell();
      tags.className = "tags";
      // Spaces between the chips, so the tags read (and copy) as words.
      if (record.tags && record.tags.length) record.tags.forEach((tag, i) => tags.append(...(i ? [" "] : []), tagChip(tag)));
      else tags.textContent = "—";
    }
    labelCells(table);
  }
  const focused = document.activeElement;
  showPager(history);
  const previous = $("history-prev");
  const next = $("history-next");
  // A keyboard user on the button that just became disabled keeps their place in the pager.
  if (focused === next && next.disabled && !previous.disabled) previous.focus();
  if (focused === previous && previous.disabled && !next.disabled) next.focus();
}

// ---- start -------------------------------------------------------------------------------

function init() {
  onSessionExpired(endSession);
  setUpSignIn(startSession);
  $("logout").addEventListener("click", () => endSession("You have logged out."));
  setUpDateRange(state, refresh);
  $("history-model").addEventListener("change", (event) => {
    state.model = event.target.value;
    reloadHistory(1);
  });
  $("history-tag").addEventListener("change", (event) => {
    state.tag = event.target.value;
    reloadHistory(1);
  });
  $("history-operation").addEventListener("change", (event) => {
    state.operation = event.target.value;
    reloadHistory(1);
  });
  $("history-prev").addEventListener("click", () => reloadHistory(state.historyPage - 1));
  $("history-next").addEventListener("click", () => reloadHistory(state.historyPage + 1));
  $("tz-note").textContent = timeZoneNote("budgets");

  const { token, email } = storedSession();
  if (token) {
    startSession(email || "");
  } else {
    $("login-email").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
