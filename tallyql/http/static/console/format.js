// Figures as people read them, in the browser's locale: separators, units, USD, percentages.
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const twoDecimals = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2, maximumFractionDigits: 2,
});
const usdCents = new Intl.NumberFormat(undefined, {
  style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 2,
});
const usdSmall = new Intl.NumberFormat(undefined, {
  style: "currency", currency: "USD", maximumSignificantDigits: 3,
});

export const DASH = "—";

export function fmtInt(n) {
  return n == null ? DASH : integer.format(n);
}

// large counts shortened (12.3K); the exact figure goes in the title
export function fmtCompact(n) {
  if (n == null) return DASH;
  return Math.abs(n) < 10000 ? integer.format(n) : compact.format(n);
}

// dollars to the cent; below a cent, three significant digits so small calls are not "$0.00"
export function fmtUsd(x) {
  if (x == null) return DASH;
  if (x !== 0 && Math.abs(x) < 0.01) return usdSmall.format(x);
  return usdCents.format(x);
}

// a fraction from 0 to 1 as a percentage
export function fmtPct(fraction) {
  return fraction == null ? DASH : `${oneDecimal.format(fraction * 100)} %`;
}

export function fmtMs(ms) {
  if (ms == null) return DASH;
  if (ms < 1000) return `${integer.format(ms)} ms`;
  if (ms < 60000) return `${twoDecimals.format(ms / 1000)} s`;
  return `${oneDecimal.format(ms / 60000)} min`;
}

export function fmtBytes(n) {
  if (n == null) return DASH;
  if (n < 1024) return `${integer.format(n)} B`;
  if (n < 1024 * 1024) return `${oneDecimal.format(n / 1024)} KiB`;
  return `${oneDecimal.format(n / 1024 / 1024)} MiB`;
}

export function fmtSignedPct(relative) {
  const sign = relative > 0 ? "+" : relative < 0 ? "−" : "±";
  return `${sign}${oneDecimal.format(Math.abs(relative) * 100)} %`;
}

// a change of a rate is told in percentage points, not as a percentage of a percentage
export function fmtSignedPoints(absolute) {
  const sign = absolute > 0 ? "+" : absolute < 0 ? "−" : "±";
  return `${sign}${oneDecimal.format(Math.abs(absolute) * 100)} pp`;
}

const dateTimeFormats = new Map();
function dateTimeFormat(timeZone, withSeconds) {
  const cacheKey = `${timeZone}|${withSeconds}`;
  if (!dateTimeFormats.has(cacheKey)) {
    dateTimeFormats.set(cacheKey, new Intl.DateTimeFormat(undefined, {
      timeZone, year: "numeric", month: "short", day: "2-digit", hour: "2-digit",
      minute: "2-digit", second: withSeconds ? "2-digit" : undefined, hourCycle: "h23",
    }));
  }
  return dateTimeFormats.get(cacheKey);
}

export function fmtDateTime(iso, timeZone, withSeconds = true) {
  return iso ? dateTimeFormat(timeZone, withSeconds).format(new Date(iso)) : DASH;
}

const dayFormats = new Map();
// a local day, as on a daily chart's axis ("Dec 03")
export function fmtDay(iso, timeZone) {
  if (!dayFormats.has(timeZone)) {
    dayFormats.set(timeZone, new Intl.DateTimeFormat(undefined, { timeZone, month: "short", day: "2-digit" }));
  }
  return dayFormats.get(timeZone).format(new Date(iso));
}

const timeFormats = new Map();
// an hour or minute bucket on a chart's axis ("14:00")
export function fmtTime(iso, timeZone) {
  if (!timeFormats.has(timeZone)) {
    timeFormats.set(timeZone, new Intl.DateTimeFormat(undefined, { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }));
  }
  return timeFormats.get(timeZone).format(new Date(iso));
}
