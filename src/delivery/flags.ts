// Momentum's connection error model: one CONN_ERROR_* value, possibly ORed with CONN_ACTION_*
// bits that tell the caller what to do with the domain's queue. Momentum's numeric values are
// not public; these are ours, stable, and named in logs.

export const CONN_ERROR_MX_LOOKUP_PENDING = 1 << 0;
export const CONN_ERROR_MX_LOOKUP_FAILED = 1 << 1;
export const CONN_ERROR_SMTP_NULL_MX = 1 << 2;
export const CONN_ERROR_NO_MXS_REACHABLE = 1 << 3;
export const CONN_ERROR_PROHIBITED_IP = 1 << 4;
export const CONN_ERROR_HOST_MAX_REACHED = 1 << 5;
export const CONN_ERROR_SOCKET = 1 << 6;
export const CONN_ERROR_IOCTL = 1 << 7;
export const CONN_ERROR_BIND = 1 << 8;
export const CONN_ERROR_CONNECT = 1 << 9;
export const CONN_ERROR_CONNECT_NETWORK = 1 << 10;
export const CONN_ERROR_CONNECT_TIMEOUT = 1 << 11;
export const CONN_ACTION_REQUEUE1 = 1 << 16;
export const CONN_ACTION_PURGE_DOMAIN = 1 << 17;

const NAMES: ReadonlyArray<readonly [number, string]> = [
  [CONN_ERROR_MX_LOOKUP_PENDING, 'CONN_ERROR_MX_LOOKUP_PENDING'],
  [CONN_ERROR_MX_LOOKUP_FAILED, 'CONN_ERROR_MX_LOOKUP_FAILED'],
  [CONN_ERROR_SMTP_NULL_MX, 'CONN_ERROR_SMTP_NULL_MX'],
  [CONN_ERROR_NO_MXS_REACHABLE, 'CONN_ERROR_NO_MXS_REACHABLE'],
  [CONN_ERROR_PROHIBITED_IP, 'CONN_ERROR_PROHIBITED_IP'],
  [CONN_ERROR_HOST_MAX_REACHED, 'CONN_ERROR_HOST_MAX_REACHED'],
  [CONN_ERROR_SOCKET, 'CONN_ERROR_SOCKET'],
  [CONN_ERROR_IOCTL, 'CONN_ERROR_IOCTL'],
  [CONN_ERROR_BIND, 'CONN_ERROR_BIND'],
  [CONN_ERROR_CONNECT, 'CONN_ERROR_CONNECT'],
  [CONN_ERROR_CONNECT_NETWORK, 'CONN_ERROR_CONNECT_NETWORK'],
  [CONN_ERROR_CONNECT_TIMEOUT, 'CONN_ERROR_CONNECT_TIMEOUT'],
  [CONN_ACTION_REQUEUE1, 'CONN_ACTION_REQUEUE1'],
  [CONN_ACTION_PURGE_DOMAIN, 'CONN_ACTION_PURGE_DOMAIN'],
];

/** The names of the bits set in `err`, errors first, e.g. ['CONN_ERROR_CONNECT_TIMEOUT', 'CONN_ACTION_REQUEUE1']. */
export function flagNames(err: number): string[] {
  return NAMES.filter(([bit]) => (err & bit) !== 0).map(([, name]) => name);
}
