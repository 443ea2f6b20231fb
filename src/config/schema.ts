// Server configuration (SPEC §9): the shape, and the defaults that on_config
// receives. Durations and sizes stay in their written form here ("5m",
// "32MiB"); src/config/units.ts converts them. Validation lives in
// src/config/validate.ts.

export interface Config {
  server: {
    name: string;
    domain: string;
    virtual: string[];
    relay_networks: string[];
    recipient_delimiter: string;
    /** Extension: the user (and group; "" = the user's) the server runs as after binding its listeners; "" = stay. */
    user: string;
    group: string;
    interfaces: {
      addr: string[];
      addr_submission: string[];
      addr_submissions: string[];
      proxy_from: string[];
    };
    tls: {
      certificate: string | null;
      private_key: string | null;
      require_for_auth: boolean;
      min_version: string;
      handshake_timeout: string;
    };
    smtp: {
      client_count_max: number;
      client_count_max_per_ip: number;
      rcpt_count_max: number;
      message_size_limit: number;
      error: { soft_count: number; hard_count: number; delay: string };
      greeting_delay: string;
      timeout: string;
      data_timeout: string;
      /** Extension: whole-session limit (a slow client cannot hold a worker forever). */
      session_timeout: string;
      /** Extension: longest command line accepted (SPEC §4.5: 2048 octets). */
      line_length_max: number;
      /** Extension: largest header block accepted in DATA. */
      header_size_max: number;
      /** Extension: IPv6 clients count against client_count_max_per_ip per network of this many bits. */
      client_ipv6_prefix_length: number;
      /** Extension: the last this many of client_count_max slots (at most an eighth of it) only go to clients holding no connection. */
      client_count_reserved_for_new: number;
      /** Extension: "strict" refuses a HELO/EHLO name that is no RFC 5321 domain or address literal (vSMTP); "lenient" leaves it to the rules. */
      helo_syntax: 'lenient' | 'strict';
    };
    auth: {
      mechanisms: string[];
      backend: string | null;
      saslauthd_service: string;
      saslauthd_realm: string;
      attempts_max: number;
      /** Extension: failed AUTH attempts per client IP (across sessions) before refusal. */
      failures_per_ip_max: number;
      failure_window: string;
      allow_plaintext: boolean;
    };
    dns: {
      servers: string[];
      timeout: string;
      dnsbl_timeout: string;
    };
    /** Extension: the Prometheus endpoint, `host:port`; unset (null) serves none. */
    metrics: { listen: string | null };
  };
  queue: {
    dir: string;
    /** Extension: how long a message stays in dead/ before it is removed; "0s" keeps it forever. */
    dead_max_age: string;
  };
  delivery: {
    default: string;
    /** Extension: the transport of local-domain recipients whose rules chose none ("" = delivery.default), e.g. "maildir" or "lmtp". */
    local: string;
    retry: string[];
    max_age: string;
    bounce: boolean;
    concurrency: number;
    concurrency_per_destination: number;
    maildir: string;
    mbox: string;
    /** Extension: who local mailbox files belong to: "" (the server's user), a user name, or "{local_part}". */
    mailbox_owner: string;
    /** Extension: LMTP server of transport::lmtp without a target: "unix:/path", "/path" or "host[:port]". */
    lmtp: string;
    /** Extension: an aliases file in the /etc/aliases format for the local domains ("" = none). */
    aliases: string;
    /** Extension: a virtual alias map, `address target, …` or `@domain target` ("" = none). */
    virtual_aliases: string;
    timeout: string;
    /** Extension: TCP port of MX hosts (25; tests point MX delivery at loopback servers). */
    mx_port: number;
  };
  dkim: { keys: Record<string, Array<{ selector: string; private_key: string }>> };
  state: { store: string; prefix: string };
  logs: { level: string; format: string };
  vsl: {
    error_status: 'tempfail' | 'deny';
    rule_timeout: string;
    io_budget: string;
    memory_limit: string;
    allow_cmd: boolean;
    env_allow: string[];
    data_dir: string;
  };
}

/** Keys that only take effect after a restart (SPEC §9.2 "R"). */
export const RESTART_KEYS = [
  'server.interfaces.addr',
  'server.interfaces.addr_submission',
  'server.interfaces.addr_submissions',
  'server.interfaces.proxy_from',
  'queue.dir',
  'state.store',
  'state.prefix',
  'logs.format',
  'vsl.data_dir',
  'server.metrics.listen',
  'server.user',
  'server.group',
];

export function defaultConfig(hostname: string, isTerminal = false): Config {
  return {
    server: {
      name: hostname,
      domain: hostname,
      virtual: [],
      relay_networks: ['127.0.0.0/8', '::1/128'],
      recipient_delimiter: '+',
      user: '',
      group: '',
      interfaces: {
        addr: ['0.0.0.0:25'],
        addr_submission: [],
        addr_submissions: [],
        proxy_from: [],
      },
      tls: {
        certificate: null,
        private_key: null,
        require_for_auth: true,
        min_version: 'TLSv1.2',
        handshake_timeout: '10s',
      },
      smtp: {
        client_count_max: 256,
        client_count_max_per_ip: 20,
        rcpt_count_max: 1000,
        message_size_limit: 10240000,
        error: { soft_count: 10, hard_count: 20, delay: '1s' },
        greeting_delay: '0s',
        timeout: '5m',
        data_timeout: '10m',
        session_timeout: '30m',
        line_length_max: 2048,
        header_size_max: 1048576,
        client_ipv6_prefix_length: 64,
        client_count_reserved_for_new: 32,
        helo_syntax: 'lenient',
      },
      auth: {
        mechanisms: ['PLAIN', 'LOGIN'],
        backend: null,
        saslauthd_service: 'smtp',
        saslauthd_realm: '',
        attempts_max: 3,
        failures_per_ip_max: 10,
        failure_window: '15m',
        allow_plaintext: false,
      },
      dns: { servers: [], timeout: '5s', dnsbl_timeout: '2s' },
      metrics: { listen: null },
    },
    queue: { dir: '/var/spool/mta', dead_max_age: '0s' },
    delivery: {
      default: 'mx',
      local: '',
      retry: ['5m', '15m', '30m', '1h', '2h', '4h'],
      max_age: '5d',
      bounce: true,
      concurrency: 32,
      concurrency_per_destination: 8,
      maildir: '/var/vmail/{domain}/{local_part}/Maildir',
      mbox: '/var/mail/{local_part}',
      mailbox_owner: '',
      lmtp: '',
      aliases: '',
      virtual_aliases: '',
      timeout: '5m',
      mx_port: 25,
    },
    dkim: { keys: {} },
    state: { store: 'memory', prefix: 'mta:' },
    logs: { level: 'info', format: isTerminal ? 'pretty' : 'json' },
    vsl: {
      error_status: 'tempfail',
      rule_timeout: '1s',
      io_budget: '30s',
      memory_limit: '32MiB',
      allow_cmd: false,
      env_allow: [],
      data_dir: '/var/lib/mta',
    },
  };
}
