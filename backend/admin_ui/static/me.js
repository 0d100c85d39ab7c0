// TokenLedger "My usage" page: the signed-in user's own budget, totals, breakdowns and calls, read
// from /api/me/usage*. Plain JavaScript, no third-party code; everything shown is set as text.
// The access token lives in sessionStorage (this tab only, never a cookie), under the same key as
// the admin page's, so an admin moves between the two pages without signing in again.
"use strict";

const TOKEN_KEY = "tokenledger.accessToken";
const EMAIL_KEY = "tokenledger.email";
const HISTORY_PAGE_SIZE = 10;
const COST_DECIMALS = 10;
const WINDOW_NAMES = { day: "Today", month: "This month" };

const numberFormat = new Intl.NumberFormat("en-US");
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

const state = {
  preset: "30d", start: null, end: null, model: "", tag: "", historyPage: 1,
  loads: 0, historyLoads: 0, sessions: 0,
};

const $ = (id) => document.getElementById(id);

// ---- formatting (the admin page's rules) -------------------------------------------------

function formatNumber(value) {
  return numberFormat.format(value);
}

// Dollars with cents from $1 up; smaller amounts keep 4, then 6 decimals so they never read $0.00.
function formatUsd(value) {
  const digits = value === 0 || Math.abs(value) >= 1 ? 2 : Math.abs(value) >= 0.01 ? 4 : 6;
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function humanize(key) {
  return String(key).replaceAll("_", " ");
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

// A <time> in the reader's zone with the UTC instant on hover.
function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = `${iso} (UTC)`;
  time.textContent = timeFormat.format(new Date(iso));
  return time;
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
      if (details.length && !text.includes(details[0])) text += ` (${details.join("; ")})`;
    }
    return text;
  } catch (ignored) {
    return `The server answered ${response.status} ${response.statusText}`;
  }
}

async function getData(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path + query, { headers });
  } catch (networkError) {
    throw new ApiError(0, "The service cannot be reached. Check your connection and try again.");
  }
  if (!response.ok) {
    const message = await errorMessage(response);
    if (response.status === 401 && token) endSession("Your session has expired. Please sign in again.");
    throw new ApiError(response.status, message);
  }
  return (await response.json()).data;
}

function rangeParams() {
  return { startDate: state.start, endDate: state.end };
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

function isAdmin(account) {
  return account.role === "admin" || account.orgRole === "admin";
}

// Nothing of the previous account stays in the page for the next one to see.
function clearFigures() {
  $("budget-windows").replaceChildren(note("Loading…"));
  for (const id of ["card-tokens", "card-cost", "card-requests"]) $(id).textContent = "…";
  $("card-io").textContent = "";
  placeholder($("models-table"), 6, "Loading…");
  placeholder($("tags-table"), 4, "Loading…");
  placeholder($("history-table"), 9, "Loading…");
  $("history-page").textContent = "";
  $("history-prev").disabled = true;
  $("history-next").disabled = true;
  state.model = "";
  state.tag = "";
  filterOptions($("history-model"), "All models", []);
  filterOptions($("history-tag"), "All tags", []);
}

function endSession(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  state.sessions += 1;
  state.loads += 1;
  state.historyLoads += 1;
  clearFigures();
  $("usage-view").hidden = true;
  $("usage-view").dataset.state = "ready";
  $("session").hidden = true;
  $("admin-link").hidden = true;
  $("login-view").hidden = false;
  $("login-password").value = "";
  showAlert(message || "");
  $("login-email").focus();
}

// `account` is the user the sign-in returned; after a reload it is read again from /auth/me.
async function startSession(email, account) {
  const session = ++state.sessions;
  $("login-view").hidden = true;
  $("usage-view").hidden = false;
  $("usage-view").dataset.state = "loading";
  $("session").hidden = false;
  $("session-email").textContent = email;
  showAlert("");
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
  applyPreset(state.preset);
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
    let response;
    try {
      response = await fetch("/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ email, password }),
      });
    } catch (networkError) {
      throw new ApiError(0, "The service cannot be reached. Check your connection and try again.");
    }
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    const data = (await response.json()).data;
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

// ---- date range --------------------------------------------------------------------------

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
  state.start = start;
  state.end = end;
  refresh();
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
  $("range-label").textContent = state.start === state.end
    ? `${state.start} (UTC day)` : `${state.start} to ${state.end} (whole UTC days)`;
  const results = await Promise.allSettled([loadBudget(load), loadBreakdowns(load), loadHistory(1)]);
  if (load !== state.loads) return;
  const failed = results.find((result) => result.status === "rejected" && result.reason);
  if (failed) report(failed.reason);
  setBusy(false);
}

async function loadBudget(load) {
  try {
    const usage = await getData("/api/me/usage");
    if (load === state.loads) renderBudget(usage.windows);
  } catch (failure) {
    if (load !== state.loads) return;
    $("budget-windows").replaceChildren(note(`Your budget could not be loaded: ${failure.message}`, "error"));
    throw failure;
  }
}

async function loadBreakdowns(load) {
  try {
    const [models, tags] = await Promise.all([
      getData("/api/me/usage/breakdown", { ...rangeParams(), by: "model" }),
      getData("/api/me/usage/breakdown", { ...rangeParams(), by: "tag" }),
    ]);
    if (load !== state.loads) return;
    renderTotals(models);
    renderModels(models);
    renderTags(tags);
    filterOptions($("history-model"), "All models", models.map((row) => row.key), state.model);
    filterOptions($("history-tag"), "All tags", tags.map((row) => row.key), state.tag);
  } catch (failure) {
    if (load !== state.loads) return;
    const message = `Could not be loaded: ${failure.message}`;
    for (const id of ["card-tokens", "card-cost", "card-requests"]) $(id).textContent = "—";
    $("card-io").textContent = "";
    placeholder($("models-table"), 6, message, "error");
    placeholder($("tags-table"), 4, message, "error");
    throw failure;
  }
}

async function loadHistory(page) {
  const load = ++state.historyLoads;
  const panel = $("history-panel");
  panel.setAttribute("aria-busy", "true");
  panel.dataset.state = "loading";
  const params = { ...rangeParams(), page, limit: HISTORY_PAGE_SIZE };
  if (state.model) params.model = state.model;
  if (state.tag) params.tag = state.tag;
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
    if (load === state.historyLoads) {
      panel.setAttribute("aria-busy", "false");
      panel.dataset.state = "ready";
    }
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

function placeholder(table, columns, message, className = "empty") {
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  const cell = tbody.insertRow().insertCell();
  cell.colSpan = columns;
  cell.className = className === "empty" ? "empty" : `empty ${className}`;
  cell.textContent = message;
}

// Each cell names its column, for the narrow layout where a row reads as a card (admin.css .stack).
function labelCells(table) {
  const names = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((td, index) => { td.dataset.label = names[index] || ""; });
  }
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
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
    title.textContent = `${WINDOW_NAMES[window.window] || humanize(window.window)} (UTC ${window.period})`;
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
  if (!rows.length) return placeholder(table, 6, NO_CALLS);
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
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
  labelCells(table);
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

function tagChip(tag) {
  const chip = document.createElement("span");
  chip.className = "tag";
  chip.textContent = tag;
  return chip;
}

// The choices are what the range holds; a chosen one the range lacks stays, so it can be undone.
function filterOptions(select, allLabel, keys, chosen = "") {
  const values = [...new Set(keys)];
  if (chosen && !values.includes(chosen)) values.push(chosen);
  select.replaceChildren(new Option(allLabel, ""), ...values.map((key) => new Option(key, key)));
  select.value = chosen;
}

function renderHistory(history) {
  const table = $("history-table");
  if (!history.data.length) {
    placeholder(table, 9, state.model || state.tag
      ? "No calls in this range match the chosen model and tag." : NO_CALLS);
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
  const pages = Math.max(1, history.totalPages);
  $("history-page").textContent = `Page ${history.page} of ${pages} · ${formatNumber(history.total)} calls`;
  const previous = $("history-prev");
  const next = $("history-next");
  const focused = document.activeElement;
  previous.disabled = history.page <= 1;
  next.disabled = history.page >= pages;
  // A keyboard user on the button that just became disabled keeps their place in the pager.
  if (focused === next && next.disabled && !previous.disabled) previous.focus();
  if (focused === previous && previous.disabled && !next.disabled) next.focus();
}

// ---- start -------------------------------------------------------------------------------

function timeZoneNote() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const offset = `${String(Math.floor(Math.abs(minutes) / 60)).padStart(2, "0")}:${String(Math.abs(minutes) % 60).padStart(2, "0")}`;
  return `Times are shown in your time zone (${zone}, UTC${sign}${offset}); hover a time for UTC. ` +
    "Date ranges and budgets count whole UTC days.";
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => endSession("You have logged out."));
  for (const button of document.querySelectorAll(".preset")) {
    button.addEventListener("click", () => applyPreset(button.dataset.preset));
  }
  $("custom-range").addEventListener("submit", applyCustomRange);
  $("history-model").addEventListener("change", (event) => {
    state.model = event.target.value;
    reloadHistory(1);
  });
  $("history-tag").addEventListener("change", (event) => {
    state.tag = event.target.value;
    reloadHistory(1);
  });
  $("history-prev").addEventListener("click", () => reloadHistory(state.historyPage - 1));
  $("history-next").addEventListener("click", () => reloadHistory(state.historyPage + 1));
  $("tz-note").textContent = timeZoneNote();

  const email = sessionStorage.getItem(EMAIL_KEY);
  if (sessionStorage.getItem(TOKEN_KEY)) {
    startSession(email || "");
  } else {
    $("login-email").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
