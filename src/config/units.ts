// Durations and sizes as written in configuration and built-in arguments
// (SPEC §1.2): `<int><unit>` groups with units ms s m h d ("1h30m"), and sizes
// as an int or `<int><unit>` with KB MB GB KiB MiB GiB.

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  B: 1, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3,
};

/** Milliseconds in a duration like "1500ms" or "1h30m"; throws on anything else. */
export function parseDuration(text: string): number {
  const s = text.trim();
  const re = /(\d+)(ms|s|m|h|d)/y;
  let total = 0;
  let i = 0;
  if (s === '') throw new Error(`invalid duration '${text}': expected e.g. "30s", "5m", "1h30m"`);
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) throw new Error(`invalid duration '${text}': expected e.g. "30s", "5m", "1h30m"`);
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    i = re.lastIndex;
  }
  return total;
}

/** Bytes in a size: a number, or a string like "10MB" or "32MiB". */
export function parseSize(value: string | number | bigint): number {
  if (typeof value === 'number' || typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid size ${value}`);
    return n;
  }
  const m = /^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$/.exec(value);
  if (!m) throw new Error(`invalid size '${value}': expected e.g. 10240000, "10MB" or "32MiB"`);
  return Number(m[1]) * SIZE_UNITS[m[2] ?? 'B']!;
}
