// Where a policy sets a configuration key, so that a bad value is reported at
// the line of `config.server.smtp.timeout = 5;` rather than at on_config's
// first line. A textual search of the file defining on_config: the longest
// dotted suffix of the key that is assigned (`config.server.smtp.timeout =`,
// then `smtp.timeout =` after `let smtp = config.server.smtp;`, then
// `timeout =`), last occurrence, since that is the value in force.

export interface SourcePos {
  line: number;
  col: number;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function assignmentPosition(source: string, key: string): SourcePos | null {
  const segs = key.replace(/\[\d+\]$/, '').split('.');
  for (let n = segs.length; n >= 1; n--) {
    const suffix = segs.slice(segs.length - n).map(escape).join('\\s*\\.\\s*');
    const re = new RegExp(`\\.\\s*(${suffix})\\s*(?:\\+=|=(?!=))`, 'g');
    let last: RegExpExecArray | null = null;
    for (let m = re.exec(source); m !== null; m = re.exec(source)) last = m;
    if (last === null) continue;
    const at = last.index + last[0].indexOf(last[1]!);
    const before = source.slice(0, at);
    const line = before.split('\n').length;
    return { line, col: at - before.lastIndexOf('\n') };
  }
  return null;
}
