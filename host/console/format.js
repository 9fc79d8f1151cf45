// How the console writes times (always UTC, and says so), dates, numbers,
// quantities with their meter's unit, bytes and durations.

const numberFormat = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 2 });
const integerFormat = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });

/** "2026-11-01 14:00 UTC" from an ISO time (seconds shown when not zero). */
export function dateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const text = date.toISOString();
  const seconds = text.slice(17, 19);
  return `${text.slice(0, 10)} ${text.slice(11, 16)}${seconds === "00" ? "" : `:${seconds}`} UTC`;
}

/** "2026-11-01" (the UTC day) from an ISO time. */
export function day(iso) {
  return new Date(iso).toISOString().slice(0, 10);
}

/**
 * An export window, short when it is a calendar month ("November 2026
 * (UTC)"), a whole UTC day ("2026-11-01 UTC") or an hour ("2026-11-01
 * 14:00–15:00 UTC"), else "start – end UTC".
 */
export function windowRange(startIso, endIso) {
  const [start, end] = [new Date(startIso), new Date(endIso)];
  const length = end - start;
  const startText = dateTime(startIso).replace(" UTC", "");
  if (isCalendarMonth(start, end)) return `${monthFormat.format(start)} (UTC)`;
  if (length === 86_400_000 && startText.endsWith("00:00")) return `${startText.slice(0, 10)} UTC`;
  if (length === 3_600_000) return `${startText}–${dateTime(endIso).slice(11)}`;
  return `${startText} – ${dateTime(endIso)}`;
}

const monthFormat = new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" });

/** Whether `[start, end)` is one whole calendar month in UTC. */
function isCalendarMonth(start, end) {
  const next = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
  return start.getTime() === Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), 1) && end.getTime() === next.getTime();
}

/** The full window in times: "2026-11-01 00:00 – 2026-12-01 00:00 UTC". */
export function windowTimes(startIso, endIso) {
  return `${dateTime(startIso).replace(" UTC", "")} – ${dateTime(endIso)}`;
}

/** Today's UTC day, "YYYY-MM-DD". */
export function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}

/** A UTC day `days` after (or before) a "YYYY-MM-DD" day. */
export function addDays(dayText, days) {
  const date = new Date(`${dayText}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return date.toISOString().slice(0, 10);
}

/** Midnight UTC of a "YYYY-MM-DD" day, as the API's bounds are written. */
export function midnight(dayText) {
  return `${dayText}T00:00:00Z`;
}

/** A number with grouping and at most two decimals. */
export function number(value) {
  return typeof value === "number" ? numberFormat.format(value) : "—";
}

/** A count (no decimals). */
export function count(value) {
  return typeof value === "number" ? integerFormat.format(value) : "—";
}

/** "1,234.5 Hours": a quantity with its meter's unit. */
export function quantity(value, unit) {
  return unit ? `${number(value)} ${unit}` : number(value);
}

const BYTE_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];

/** "1.5 MiB". */
export function bytes(value) {
  if (typeof value !== "number") return "—";
  let unit = 0;
  let scaled = value;
  while (scaled >= 1024 && unit < BYTE_UNITS.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? count(scaled) : number(scaled)} ${BYTE_UNITS[unit]}`;
}

/** "850 ms", "12.3 s", "4 min 5 s". */
export function duration(ms) {
  if (typeof ms !== "number") return "—";
  if (ms < 1000) return `${count(ms)} ms`;
  if (ms < 60_000) return `${number(ms / 1000)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "5 min ago", "3 h ago", "2 days ago" relative to `now` (ISO or Date). */
export function ago(iso, now = new Date()) {
  const seconds = Math.round((new Date(now) - new Date(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}
