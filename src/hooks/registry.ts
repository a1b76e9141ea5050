// The closed set of hooks: plugins register handlers before start, the core calls them, and no handler can break the pipeline.
import type { Logger } from 'pino';
import { withTimeout } from '../core/timeout.js';
import type { HookArgs, HookName, HookResult, HookSignatures } from './signatures.js';

export class HookError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HookError';
    this.code = code;
  }
}

// `satisfies` makes the compiler reject a hook missing here or a name signatures.ts does not
// declare, so the runtime list cannot drift from the types.
const KNOWN = {
  log_client_connection_failure: true,
  log_client_connection_success: true,
  premigrate_outbound_connection: true,
  set_binding: true,
  dkim_sign: true,
  log_delivery: true,
  log_transient_failure: true,
  log_permanent_failure: true,
} as const satisfies Record<HookName, true>;

export const HOOK_NAMES: readonly HookName[] = Object.freeze(Object.keys(KNOWN) as HookName[]);

export interface RegisterOptions {
  /** Name logged with every error of this handler. */
  plugin: string;
  /** Passed to the handler as its first argument, as Momentum passes the registration closure. */
  closure?: unknown;
  /** How long an asynchronous handler may take before it is abandoned. */
  timeoutMs?: number;
}

type AnyHandler = (closure: unknown, ...args: unknown[]) => unknown;

interface Entry {
  readonly handler: AnyHandler;
  readonly plugin: string;
  readonly closure: unknown;
  readonly timeoutMs: number;
}

const TIMED_OUT: unique symbol = Symbol('timed out');

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function checkTimeout(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HookError('HOOK_BAD_OPTION', `${what} must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

export class HookRegistry {
  private readonly log: Logger;
  private readonly defaultTimeoutMs: number;
  // Lists are replaced, never mutated, so a call in progress keeps iterating the list it started
  // with and the hot path needs no defensive copy.
  private readonly hooks = new Map<HookName, readonly Entry[]>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private sealed = false;

  constructor(opts: { log: Logger; defaultTimeoutMs?: number }) {
    this.log = opts.log;
    this.defaultTimeoutMs = opts.defaultTimeoutMs === undefined ? 5000 : checkTimeout(opts.defaultTimeoutMs, 'defaultTimeoutMs');
  }

  registerFirst<N extends HookName>(name: N, handler: HookSignatures[N], opts: RegisterOptions): void {
    const entry = this.entry(name, handler, opts);
    this.hooks.set(name, [entry, ...(this.hooks.get(name) ?? [])]);
  }

  registerLast<N extends HookName>(name: N, handler: HookSignatures[N], opts: RegisterOptions): void {
    const entry = this.entry(name, handler, opts);
    this.hooks.set(name, [...(this.hooks.get(name) ?? []), entry]);
  }

  has(name: HookName): boolean {
    // Plugins are plain JavaScript: a misspelt name answering false would hide the mistake.
    this.checkName(name);
    return (this.hooks.get(name)?.length ?? 0) > 0;
  }

  /** Closes registration; the daemon calls it once every plugin is loaded. */
  seal(): void {
    this.sealed = true;
  }

  /**
   * Takes the handlers of a registry built from a reloaded config. Calls in progress finish on
   * the lists they started with.
   */
  adopt(other: HookRegistry): void {
    this.hooks.clear();
    for (const [name, list] of other.hooks) this.hooks.set(name, list);
  }

  /**
   * Runs every handler in order (firsts, then lasts), one after the other. Synchronous handlers run
   * without yielding, so when all are synchronous they see core state exactly as it was at the
   * call. Never rejects: a failing handler contributes undefined.
   */
  async call<N extends HookName>(name: N, ...args: HookArgs<N>): Promise<Array<HookResult<N> | undefined>> {
    const list = this.hooks.get(name);
    if (list === undefined || list.length === 0) return [];
    const results: Array<HookResult<N> | undefined> = [];
    for (const entry of list) {
      // Awaiting a plain value would still yield to the event loop; only real waits may.
      const out = this.invoke(name, entry, args);
      results.push((out instanceof Promise ? await out : out) as HookResult<N> | undefined);
    }
    return results;
  }

  /** call() without waiting, for logging hooks on the delivery path. */
  fire<N extends HookName>(name: N, ...args: HookArgs<N>): void {
    const list = this.hooks.get(name);
    if (list === undefined || list.length === 0) return;
    const running = this.call(name, ...args);
    this.inFlight.add(running);
    // call() never rejects, so this chain cannot produce an unhandled rejection.
    void running.then(() => this.inFlight.delete(running));
  }

  /** Resolves once every call fired so far has settled. */
  async idle(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private checkName(name: unknown): asserts name is HookName {
    if (typeof name !== 'string' || !Object.hasOwn(KNOWN, name)) {
      throw new HookError('HOOK_UNKNOWN', `unknown hook ${JSON.stringify(name)}; known hooks: ${HOOK_NAMES.join(', ')}`);
    }
  }

  private entry(name: HookName, handler: unknown, opts: RegisterOptions | undefined): Entry {
    if (this.sealed) {
      throw new HookError('HOOK_REGISTRATION_CLOSED', `cannot register on hook ${name}: registration is closed once the daemon has started`);
    }
    this.checkName(name);
    if (typeof handler !== 'function') {
      throw new HookError('HOOK_BAD_HANDLER', `handler for hook ${name} must be a function, got ${typeof handler}`);
    }
    if (opts === null || typeof opts !== 'object' || typeof opts.plugin !== 'string' || opts.plugin === '') {
      throw new HookError('HOOK_BAD_OPTION', `registration on hook ${name} must name its plugin`);
    }
    const timeoutMs = opts.timeoutMs === undefined ? this.defaultTimeoutMs : checkTimeout(opts.timeoutMs, `timeoutMs of plugin ${opts.plugin} on hook ${name}`);
    return { handler: handler as AnyHandler, plugin: opts.plugin, closure: opts.closure, timeoutMs };
  }

  private invoke(name: HookName, entry: Entry, args: readonly unknown[]): unknown {
    let result: unknown;
    try {
      result = entry.handler(entry.closure, ...args);
    } catch (err) {
      this.log.warn({ event: 'hook_error', hook: name, plugin: entry.plugin, err }, `hook ${name}: plugin ${entry.plugin} threw`);
      return undefined;
    }
    // Only asynchronous handlers pay for a timer and a promise.
    if (!isThenable(result)) return result;
    return this.bounded(name, entry, Promise.resolve(result));
  }

  private async bounded(name: HookName, entry: Entry, pending: Promise<unknown>): Promise<unknown> {
    try {
      const outcome = await withTimeout(pending, entry.timeoutMs, () => TIMED_OUT);
      if (outcome !== TIMED_OUT) return outcome;
      // An abandoned handler may still reject later; nobody is left to hear it.
      pending.catch(() => {});
      const err = new HookError('HOOK_TIMEOUT', `hook ${name}: plugin ${entry.plugin} did not finish within ${entry.timeoutMs} ms`);
      this.log.warn({ event: 'hook_timeout', hook: name, plugin: entry.plugin, err }, err.message);
      return undefined;
    } catch (err) {
      this.log.warn({ event: 'hook_error', hook: name, plugin: entry.plugin, err }, `hook ${name}: plugin ${entry.plugin} failed`);
      return undefined;
    }
  }
}
