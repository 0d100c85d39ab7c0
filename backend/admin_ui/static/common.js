// What the admin page (admin.js) and the "My usage" page (me.js) share: the API and its errors,
// the session, the formatting, the date-range filter and the table helpers. An ES module imported
// by both; plain JavaScript, no third-party code; everything shown is set as text.
// The access token lives in sessionStorage (this tab only, never a cookie), under one key for both
// pages, so an admin moves between the two without signing in again.

const TOKEN_KEY = "tokenledger.accessToken";
const EMAIL_KEY = "tokenledger.email";
const UNREACHABLE = "The service cannot be reached. Check your connection and try again.";

export const $ = (id) => document.getElementById(id);

// ---- formatting --------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat("en-US");

// The zone the page counts days and shows times in: the organization's (the API says which with
// every answer), UTC for a platform admin's view of every organization. setViewZone changes it.
let viewZone = "UTC";
let timeFormat = zoneFormat(viewZone);

function zoneFormat(zone) {
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium", timeZone: zone });
}

export function setViewZone(zone) {
  viewZone = zone || "UTC";
  timeFormat = zoneFormat(viewZone);
}

export function getViewZone() {
  return viewZone;
}

// Today's date (YYYY-MM-DD) in the view's zone.
function zoneToday() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: viewZone, year: "numeric", month: "2-digit",
                                                   day: "2-digit" }).formatToParts(new Date());
  const part = (type) => parts.find((item) => item.type === type).value;
  return `${part("year")}-${part("month")}-${part("day")}`;
}

export function formatNumber(value) {
  return numberFormat.format(value);
}

// Dollars with cents from $1 up; smaller amounts keep 4, then 6 decimals so they never read $0.00.
export function formatUsd(value) {
  const digits = value === 0 || Math.abs(value) >= 1 ? 2 : Math.abs(value) >= 0.01 ? 4 : 6;
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// "testcase_generation" → "testcase generation".
export function humanize(key) {
  return String(key).replaceAll("_", " ");
}

// A <time> in the view's zone with the UTC instant on hover.
export function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = `${iso} (UTC)`;
  time.textContent = timeFormat.format(new Date(iso));
  return time;
}

// `counted`: what else on the page counts whole local days ("the chart", "budgets").
export function timeZoneNote(counted) {
  return `Times shown in ${viewZone}; hover a time for UTC. Date ranges and ${counted} count whole days ` +
    `in ${viewZone}.`;
}

// ---- the API -----------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The server's message; its field errors are added unless the message already names them.
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

async function reach(path, options) {
  try {
    return await fetch(path, options);
  } catch (networkError) {
    throw new ApiError(0, UNREACHABLE);
  }
}

let sessionExpired = () => {};

// What the page does when the API refuses the token it holds: `end(message)` ends the session.
export function onSessionExpired(end) {
  sessionExpired = end;
}

// A call with this tab's token; a failure is thrown as an ApiError with the server's message.
export async function request(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await reach(path, { ...options, headers });
  if (!response.ok) {
    const message = await errorMessage(response);
    if (response.status === 401 && token) sessionExpired("Your session has expired. Please sign in again.");
    throw new ApiError(response.status, message);
  }
  return response;
}

// The `data` of a GET's JSON answer; `params` become the query string.
export async function getData(path, params) {
  return (await getEnvelope(path, params)).data;
}

// The whole answer: { success, data, message, timeZone? }.
export async function getEnvelope(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  const response = await request(path + query);
  return response.json();
}

// ---- alerts and the session --------------------------------------------------------------

export function showAlert(message) {
  const alert = $("alert");
  alert.textContent = message;
  alert.hidden = !message;
}

// A 401 has already ended the session with its own message; anything else is shown as it came.
export function report(failure) {
  if (failure.status !== 401) showAlert(failure.message);
}

// Platform admins (role admin) and organization admins (orgRole admin).
export function isAdmin(account) {
  return account.role === "admin" || account.orgRole === "admin";
}

// The session this tab kept: { token, email }, either null when there is none.
export function storedSession() {
  return { token: sessionStorage.getItem(TOKEN_KEY), email: sessionStorage.getItem(EMAIL_KEY) };
}

// The sign-in form (#login-form). `accept(user)` may refuse the account by throwing an ApiError;
// otherwise the token is kept for this tab and `start(email, user)` opens the page.
export function setUpSignIn(start, accept = () => {}) {
  $("login-form").addEventListener("submit", async (event) => {
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
      const response = await reach("/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ email, password }),
      });
      if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
      const data = (await response.json()).data;
      accept(data.user);
      sessionStorage.setItem(TOKEN_KEY, data.accessToken);
      sessionStorage.setItem(EMAIL_KEY, data.user.email);
      $("login-password").value = "";
      start(data.user.email, data.user);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : "Sign-in failed. Please try again.";
      error.hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  });
}

// The page's own view (`view`, loading) in place of the sign-in form, for `email`.
export function showSignedIn(view, email) {
  $("login-view").hidden = true;
  view.hidden = false;
  view.dataset.state = "loading";
  $("session").hidden = false;
  $("session-email").textContent = email;
  showAlert("");
}

// Forgets this tab's session and shows the sign-in form, with `message` in the alert.
export function showSignIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  $("session").hidden = true;
  $("login-view").hidden = false;
  $("login-password").value = "";
  showAlert(message || "");
  $("login-email").focus();
}

// ---- the date range ----------------------------------------------------------------------
// `range` holds the chosen preset and days: { preset, start, end }; `changed()` reloads the page.

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, count) {
  const date = new Date(day + "T00:00:00Z");
  date.setUTCDate(date.getUTCDate() + count);
  return isoDay(date);
}

// Date ranges are whole days of the view's zone, as the API counts them.
function presetRange(preset) {
  const today = zoneToday();
  switch (preset) {
    case "today": return [today, today];
    case "7d": return [addDays(today, -6), today];
    case "month": return [today.slice(0, 8) + "01", today];
    default: return [addDays(today, -29), today];
  }
}

export function applyPreset(range, preset, changed) {
  range.preset = preset;
  for (const button of document.querySelectorAll(".preset")) {
    button.setAttribute("aria-pressed", String(button.dataset.preset === preset));
  }
  const custom = $("custom-range");
  if (preset === "custom") {
    custom.hidden = false;
    $("custom-start").value = range.start || presetRange("30d")[0];
    $("custom-end").value = range.end || presetRange("30d")[1];
    $("custom-start").focus();
    return;
  }
  custom.hidden = true;
  [range.start, range.end] = presetRange(preset);
  changed();
}

function applyCustomRange(event, range, changed) {
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
  range.start = start;
  range.end = end;
  changed();
}

// The .preset buttons and the #custom-range form.
export function setUpDateRange(range, changed) {
  for (const button of document.querySelectorAll(".preset")) {
    button.addEventListener("click", () => applyPreset(range, button.dataset.preset, changed));
  }
  $("custom-range").addEventListener("submit", (event) => applyCustomRange(event, range, changed));
}

export function rangeParams(range) {
  return { startDate: range.start, endDate: range.end };
}

// After the view's zone changed: a preset means the same days of the new zone ("today" there).
export function reapplyPreset(range) {
  if (range.preset !== "custom") [range.start, range.end] = presetRange(range.preset);
}

export function showRange(range) {
  $("range-label").textContent = range.start === range.end
    ? `${range.start} (a day in ${viewZone})` : `${range.start} to ${range.end} (whole days in ${viewZone})`;
}

// ---- panels, tables and filters ----------------------------------------------------------

// A panel that is loading says so to assistive technology (aria-busy) and in data-state.
export function markBusy(panel, busy) {
  panel.setAttribute("aria-busy", String(busy));
  panel.dataset.state = busy ? "loading" : "ready";
}

export function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

// The table's body is one row across its `columns`: a message in place of rows.
export function placeholder(table, columns, message, className = "empty") {
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  const td = tbody.insertRow().insertCell();
  td.colSpan = columns;
  td.className = className === "empty" ? "empty" : `empty ${className}`;
  td.textContent = message;
}

// A by-model breakdown: model, provider, requests, tokens, cost and its share with a bar.
export function renderModelTable(table, rows, emptyMessage) {
  if (!rows.length) return placeholder(table, 6, emptyMessage);
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
}

// The choices are what the range holds; a chosen one the range lacks stays, so it can be undone.
export function filterOptions(select, allLabel, keys, chosen = "") {
  const values = [...new Set(keys)];
  if (chosen && !values.includes(chosen)) values.push(chosen);
  select.replaceChildren(new Option(allLabel, ""), ...values.map((key) => new Option(key, key)));
  select.value = chosen;
}

// The history's pager: "Page 2 of 5 · 43 calls" between #history-prev and #history-next.
export function showPager(history) {
  const pages = Math.max(1, history.totalPages);
  $("history-page").textContent = `Page ${history.page} of ${pages} · ${formatNumber(history.total)} calls`;
  $("history-prev").disabled = history.page <= 1;
  $("history-next").disabled = history.page >= pages;
}
