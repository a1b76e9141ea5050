// Loads the configured plugins at start-up and hands each one a hook API stamped with its name.
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { HookRegistry, RegisterOptions } from './registry.js';
import type { HookName, HookSignatures } from './signatures.js';

interface PluginSpec {
  path: string;
  options?: unknown;
}

/** Registration options as a plugin passes them; `plugin` defaults to the plugin's own name. */
type PluginRegisterOptions = Partial<RegisterOptions>;

interface PluginHooks {
  registerFirst<N extends HookName>(name: N, handler: HookSignatures[N], opts?: PluginRegisterOptions): void;
  registerLast<N extends HookName>(name: N, handler: HookSignatures[N], opts?: PluginRegisterOptions): void;
  has(name: HookName): boolean;
}

export interface PluginApi {
  /** The module's exported `name`, else its file name without extension. */
  readonly name: string;
  /** `options` of the plugin's entry in the configuration, as written there. */
  readonly options: unknown;
  /** Every record carries `plugin: name`. */
  readonly log: Logger;
  readonly hooks: PluginHooks;
}

type RegisterFn = (api: PluginApi) => void | Promise<void>;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

// Both `export function register` and `export default { register }` are common in plain JS
// plugins, and so is `export default function register`.
function findRegister(mod: Record<string, unknown>): RegisterFn | undefined {
  if (typeof mod['register'] === 'function') return mod['register'] as RegisterFn;
  const def = mod['default'];
  // Bound so a register written as a method may use `this`.
  if (isObject(def) && typeof def['register'] === 'function') return (def['register'] as RegisterFn).bind(def);
  if (typeof def === 'function') return def as RegisterFn;
  return undefined;
}

function findName(mod: Record<string, unknown>, file: string): string {
  if (typeof mod['name'] === 'string' && mod['name'] !== '') return mod['name'];
  const def = mod['default'];
  // A default-exported function's `name` is its identifier, not a plugin name.
  if (isObject(def) && typeof def !== 'function' && typeof def['name'] === 'string' && def['name'] !== '') return def['name'];
  return basename(file, extname(file));
}

function pluginHooks(registry: HookRegistry, plugin: string): PluginHooks {
  return {
    registerFirst: (name, handler, opts) => registry.registerFirst(name, handler, { ...opts, plugin: opts?.plugin ?? plugin }),
    registerLast: (name, handler, opts) => registry.registerLast(name, handler, { ...opts, plugin: opts?.plugin ?? plugin }),
    has: (name) => registry.has(name),
  };
}

/**
 * Imports and registers every plugin in order, so registration order follows the
 * configuration. Any failure rejects naming the plugin: the daemon must not start with a
 * plugin silently missing.
 */
export async function loadPlugins(specs: PluginSpec[], registry: HookRegistry, ctx: { log: Logger; baseDir: string }): Promise<void> {
  for (const spec of specs) {
    const path = isAbsolute(spec.path) ? spec.path : resolve(ctx.baseDir, spec.path);
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`plugin ${path}: cannot be loaded: ${describe(err)}`, { cause: err });
    }
    const register = findRegister(mod);
    if (register === undefined) {
      throw new Error(`plugin ${path}: exports no register function (export function register(api), or a default export with one)`);
    }
    const name = findName(mod, path);
    const api: PluginApi = {
      name,
      options: spec.options,
      log: ctx.log.child({ plugin: name }),
      hooks: pluginHooks(registry, name),
    };
    try {
      await register(api);
    } catch (err) {
      throw new Error(`plugin ${path}: register failed: ${describe(err)}`, { cause: err });
    }
    ctx.log.info({ event: 'plugin_loaded', plugin: name, path }, `plugin ${name} loaded`);
  }
}
