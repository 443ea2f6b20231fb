// Loading legacy data files (SPEC §7.1, §8.2–§8.4, §12): smtpd_check_rules
// files, mapping files and Postfix access maps.
//
// A file is parsed once and kept; each use stats it and re-reads it when its
// modification time, size or inode changed (SPEC §8.3 "reloaded when it
// changes"). A new version with errors is logged and the last good version
// stays in use. A file that cannot be read is an error every time, even with
// a good version in memory: a vanished rule file must fail the rule
// (temporary failure upstream), never quietly keep or drop a policy.

import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { HostEnv } from '../../host/ports.js';
import { parseAccessMap, splitMapSpec, type AccessMap, type AccessMapType } from './access-map.js';
import { formatDiagnostic, hasErrors, type Diagnostic, type Parsed } from './diagnostics.js';
import { parseMappingFile, type MappingFile } from './mapping-table.js';
import { checkAction } from './postfix.js';
import { parseSmtpdCheckRules, type SmtpdRules } from './smtpd-check-rules.js';

export type { Diagnostic } from './diagnostics.js';

export type DataFileKind = 'smtpd_check_rules' | 'mapping' | 'access';

/** Larger files are refused: these tables are meant to be read by people. */
export const MAX_DATA_FILE_BYTES = 16 * 1024 * 1024;

export class DataFileError extends Error {
  constructor(
    message: string,
    readonly diagnostics: Diagnostic[] = [],
  ) {
    super(message);
    this.name = 'DataFileError';
  }
}

/** Parses a data file of `kind`; `mapType` selects the access map format. */
export function parseDataFile(kind: 'smtpd_check_rules', text: string, file: string): Parsed<SmtpdRules>;
export function parseDataFile(kind: 'mapping', text: string, file: string): Parsed<MappingFile>;
export function parseDataFile(kind: 'access', text: string, file: string, mapType: AccessMapType): Parsed<AccessMap>;
export function parseDataFile(kind: DataFileKind, text: string, file: string, mapType?: AccessMapType): Parsed<unknown>;
export function parseDataFile(kind: DataFileKind, text: string, file: string, mapType: AccessMapType = 'hash'): Parsed<unknown> {
  switch (kind) {
    case 'smtpd_check_rules':
      return parseSmtpdCheckRules(text, file);
    case 'mapping':
      return parseMappingFile(text, file);
    case 'access':
      return parseAccessMap(text, file, mapType, checkAction);
  }
}

/** A data file named in a policy: absolute, or relative to the directory of the calling vSL file. */
export function resolveDataPath(fileDir: string, p: string): string {
  return path.resolve(fileDir, p);
}

/**
 * Splits an access map spec (`[type:]path`) and resolves its path; the type
 * prefix is kept in the result so the cache tells formats apart.
 */
export function resolveMapSpec(fileDir: string, spec: string): { type: AccessMapType; path: string } {
  const { type, path: p } = splitMapSpec(spec);
  if (p === '') throw new DataFileError(`access map '${spec}' names no file`);
  return { type, path: resolveDataPath(fileDir, p) };
}

function readProblem(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return `cannot read ${file}: ${code ?? (err instanceof Error ? err.message : String(err))}`;
}

/**
 * Checks one data file for `mta check` (synchronously). `spec` is a path,
 * for access maps with an optional `type:` prefix. Unreadable files give one
 * error at line 1.
 */
export function validateDataFile(kind: DataFileKind, spec: string): Diagnostic[] {
  let file = spec;
  let mapType: AccessMapType = 'hash';
  if (kind === 'access') {
    try {
      const s = splitMapSpec(spec);
      file = s.path;
      mapType = s.type;
    } catch (err) {
      return [{ file: spec, line: 1, col: 1, severity: 'error', message: err instanceof Error ? err.message : String(err) }];
    }
  }
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_DATA_FILE_BYTES) {
      return [{ file, line: 1, col: 1, severity: 'error', message: `file is larger than ${MAX_DATA_FILE_BYTES} bytes` }];
    }
    text = buf.toString('utf8');
  } catch (err) {
    return [{ file, line: 1, col: 1, severity: 'error', message: readProblem(file, err) }];
  }
  return parseDataFile(kind, text, file, mapType).diagnostics;
}

/** validateDataFile for a file named in a vSL file of directory `fileDir` (relative paths resolved there). */
export function validateDataFileAt(kind: DataFileKind, fileDir: string, spec: string): Diagnostic[] {
  if (kind !== 'access') return validateDataFile(kind, resolveDataPath(fileDir, spec));
  let resolved: { type: AccessMapType; path: string };
  try {
    resolved = resolveMapSpec(fileDir, spec);
  } catch (err) {
    return [{ file: spec, line: 1, col: 1, severity: 'error', message: err instanceof Error ? err.message : String(err) }];
  }
  return validateDataFile('access', `${resolved.type}:${resolved.path}`);
}

interface Entry {
  /** Stat signature of the version in `value`. */
  sig: string;
  value: unknown;
  /** Signature of a newer version found invalid (not parsed again until it changes). */
  badSig?: string;
}

/** The parsed data files of one server environment. */
export class DataFileCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly log?: Logger) {}

  /** Absolute paths of the files loaded so far (for the reload watcher, SPEC §12). */
  loadedFiles(): string[] {
    return [...new Set([...this.entries.keys()].map((k) => k.slice(k.indexOf('/'))))];
  }

  /** The current table of an absolute `file`; throws DataFileError when unreadable, or invalid with no good version. */
  async load(kind: 'smtpd_check_rules', file: string): Promise<SmtpdRules>;
  async load(kind: 'mapping', file: string): Promise<MappingFile>;
  async load(kind: 'access', file: string, mapType: AccessMapType): Promise<AccessMap>;
  async load(kind: DataFileKind, file: string, mapType: AccessMapType = 'hash'): Promise<unknown> {
    if (!path.isAbsolute(file)) throw new DataFileError(`data file path must be absolute: ${file}`);
    const key = `${kind}:${kind === 'access' ? `${mapType}:` : ''}${file}`;
    let sig: string;
    try {
      // Stat before reading: a change between the two only costs one more read.
      const st = await fsp.stat(file);
      if (!st.isFile()) throw new DataFileError(`${file} is not a regular file`);
      if (st.size > MAX_DATA_FILE_BYTES) throw new DataFileError(`${file} is larger than ${MAX_DATA_FILE_BYTES} bytes`);
      sig = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (err instanceof DataFileError) throw err;
      throw new DataFileError(readProblem(file, err));
    }
    const entry = this.entries.get(key);
    if (entry && (entry.sig === sig || entry.badSig === sig)) return entry.value;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      throw new DataFileError(readProblem(file, err));
    }
    const parsed = parseDataFile(kind, text, file, mapType);
    if (hasErrors(parsed.diagnostics)) {
      const lines = parsed.diagnostics.map(formatDiagnostic);
      if (entry) {
        entry.badSig = sig;
        this.log?.error({ file, diagnostics: lines }, `${file} is invalid; keeping the last good version`);
        return entry.value;
      }
      const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
      const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : '';
      throw new DataFileError(`${formatDiagnostic(errors[0]!)}${more}`, parsed.diagnostics);
    }
    for (const d of parsed.diagnostics) this.log?.warn({ file }, formatDiagnostic(d));
    if (entry) this.log?.info({ file }, `${file} reloaded`);
    this.entries.set(key, { sig, value: parsed.value });
    return parsed.value;
  }
}

// One cache per server environment (HostEnv lives as long as the process
// configuration); no process-wide singleton.
const caches = new WeakMap<HostEnv, DataFileCache>();

export function dataFileCacheFor(env: HostEnv): DataFileCache {
  let c = caches.get(env);
  if (!c) {
    c = new DataFileCache(env.log);
    caches.set(env, c);
  }
  return c;
}
