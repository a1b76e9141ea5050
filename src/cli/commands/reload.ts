// `impulse reload`: the daemon rereads its configuration file.
import type { Command } from 'commander';
import type { ReloadResult } from '../../admin/protocol.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

function renderReload(r: ReloadResult): string {
  const restart = r.restart_required.length === 0 ? ''
    : `restart required for: ${r.restart_required.join(', ')} (their old values stay in force until then)\n`;
  return `reloaded\n${restart}`;
}

export function register(program: Command): void {
  adminCommand(program, 'reload', 'make the daemon reread its configuration file; an invalid file is refused and the running configuration kept')
    .action((opts: AdminOptions) => run(opts, (c) => c.call('reload'), renderReload));
}
