// The server.* keys the SMTP front uses (SPEC §9.2), converted once per
// configuration into numbers and compiled lists. A reload builds a new
// Settings value; sessions read the current one at each command.

import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import { NetworkList, relayGuardConfig, type RelayGuardConfig } from '../policy/relay-guard.js';

/** SASL mechanisms this server implements; other configured names are ignored with a warning. */
export const SUPPORTED_MECHANISMS = ['PLAIN', 'LOGIN'] as const;

export interface Settings {
  serverName: string;
  domain: string;
  relay: RelayGuardConfig;
  proxyFrom: NetworkList;
  greetingDelayMs: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
  sessionTimeoutMs: number;
  handshakeTimeoutMs: number;
  clientCountMax: number;
  clientCountMaxPerIp: number;
  clientIpv6PrefixLength: number;
  clientCountReservedForNew: number;
  rcptCountMax: number;
  messageSizeLimit: number;
  lineLengthMax: number;
  headerSizeMax: number;
  errorSoftCount: number;
  errorHardCount: number;
  errorDelayMs: number;
  /** Mechanisms offered, in the configured order, upper-case. */
  authMechanisms: string[];
  authAttemptsMax: number;
  /** AUTH only under TLS (`tls.require_for_auth` and not `auth.allow_plaintext`). */
  authRequiresTls: boolean;
  errorStatus: 'tempfail' | 'deny';
  /** More Received: headers than this refuse the message (SPEC §4.5). */
  maxReceived: number;
  /** Refuse HELO/EHLO names that are no domain or address literal (`server.smtp.helo_syntax`). */
  heloStrict: boolean;
}

export function settingsFromConfig(config: Config): Settings {
  const s = config.server;
  const mechanisms = s.auth.mechanisms.map((m) => m.toUpperCase()).filter((m) => (SUPPORTED_MECHANISMS as readonly string[]).includes(m));
  return {
    serverName: s.name,
    domain: s.domain,
    relay: relayGuardConfig(s),
    proxyFrom: new NetworkList(s.interfaces.proxy_from),
    greetingDelayMs: parseDuration(s.smtp.greeting_delay),
    idleTimeoutMs: parseDuration(s.smtp.timeout),
    dataTimeoutMs: parseDuration(s.smtp.data_timeout),
    sessionTimeoutMs: parseDuration(s.smtp.session_timeout),
    handshakeTimeoutMs: parseDuration(s.tls.handshake_timeout),
    clientCountMax: s.smtp.client_count_max,
    clientCountMaxPerIp: s.smtp.client_count_max_per_ip,
    clientIpv6PrefixLength: s.smtp.client_ipv6_prefix_length,
    clientCountReservedForNew: s.smtp.client_count_reserved_for_new,
    rcptCountMax: s.smtp.rcpt_count_max,
    messageSizeLimit: s.smtp.message_size_limit,
    lineLengthMax: s.smtp.line_length_max,
    headerSizeMax: s.smtp.header_size_max,
    errorSoftCount: s.smtp.error.soft_count,
    errorHardCount: s.smtp.error.hard_count,
    errorDelayMs: parseDuration(s.smtp.error.delay),
    authMechanisms: mechanisms,
    authAttemptsMax: s.auth.attempts_max,
    authRequiresTls: s.tls.require_for_auth && !s.auth.allow_plaintext,
    errorStatus: config.vsl.error_status,
    maxReceived: 50,
    heloStrict: s.smtp.helo_syntax === 'strict',
  };
}
