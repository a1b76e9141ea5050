// `impulse domain D`: everything the scheduler knows about one destination domain.
import type { Command } from 'commander';
import type { AddressMark, DaneView, DomainDetail, StsView } from '../../admin/protocol.js';
import { fields, humanAge, humanMs, list, plural, table, when } from '../format.js';
import { type AdminOptions, adminCommand, run } from './shared.js';
import { actionText, scopeText } from './shaping.js';

function addressStatus(a: AddressMark, now: number): string {
  if (!a.failed) return 'ok';
  const flags = a.failed.flags?.length ? ` ${a.failed.flags.join('|')}` : '';
  return `failed ${humanAge(a.failed.since_s)} ago, skipped until ${when(a.failed.until, now)}${flags}`;
}

function renderMx(d: DomainDetail, now: number): string {
  const hosts = [...d.mx.hosts].sort((a, b) => a.preference - b.preference);
  if (hosts.length === 0) return '';
  const rows = hosts.flatMap((h) => (h.addresses.length === 0
    ? [[String(h.preference), h.host, '-', 'no addresses']]
    : h.addresses.map((a) => [String(h.preference), h.host, a.address, addressStatus(a, now)])));
  const mx = table([{ title: 'PREF', align: 'right' }, { title: 'MX-HOST' }, { title: 'ADDRESS' }, { title: 'STATUS' }], rows);
  const siblings = hosts.filter((h) => h.siblings.length > 0).map((h) => `Siblings of ${h.host}: ${list(h.siblings)}\n`);
  return `\n${mx}${siblings.join('')}`;
}

function renderBindings(d: DomainDetail): string {
  if (d.bindings.length === 0) return '';
  const rows = d.bindings.map((b) => [
    b.binding, b.phase, b.suspended ? 'yes' : 'no', String(b.ready), String(b.in_flight), String(b.connections), String(b.connecting),
    String(b.idle), humanMs(b.throttled_ms.messages), humanMs(b.throttled_ms.connections),
  ]);
  const right = { align: 'right' } as const;
  const bindings = table([
    { title: 'BINDING' }, { title: 'PHASE' }, { title: 'SUSPENDED' }, { title: 'READY', ...right }, { title: 'IN-FLIGHT', ...right },
    { title: 'CONN', ...right }, { title: 'CONNECTING', ...right }, { title: 'IDLE', ...right },
    { title: 'MSG-WAIT', ...right }, { title: 'CONN-WAIT', ...right },
  ], rows);
  const phases = d.bindings.filter((b) => b.phase_detail).map((b) => `Binding ${b.binding} is ${b.phase} ${b.phase_detail}\n`);
  const limits = d.bindings.map((b) => {
    const entries = Object.entries(b.limits);
    if (entries.length === 0) return '';
    const rows = entries.map(([key, l]) => [key, l.value === null ? 'unset' : String(l.value), `(${l.scope})`]);
    const a = b.adaptive;
    const adaptive = a ? `  Adaptive: ${plural(a.signals, 'rate or reputation deferral')}${a.last_signal ? `, the last ${a.last_signal}` : ''}`
      + `${a.last_step_down ? `; stepped down ${a.last_step_down}` : ''}${a.last_step_up ? `; up ${a.last_step_up}` : ''}\n` : '';
    return `\nLimits for binding ${b.binding}:\n${table([{ title: 'OPTION' }, { title: 'VALUE' }, { title: 'SCOPE' }], rows, '  ')}${adaptive}`;
  });
  return `\n${bindings}${phases.join('')}${limits.join('')}`;
}

function renderOtherNodes(d: DomainDetail): string {
  // A daemon started before an upgrade answers the newer CLI without other_nodes.
  if (!d.other_nodes?.length) return '';
  const right = { align: 'right' } as const;
  const rows = d.other_nodes.map((o) => [o.node, o.binding, String(o.ready), String(o.in_flight), String(o.connections), String(o.connecting)]);
  return `\nHeld on other nodes (counted above):\n${table([
    { title: 'NODE' }, { title: 'BINDING' }, { title: 'READY', ...right }, { title: 'IN-FLIGHT', ...right }, { title: 'CONN', ...right },
    { title: 'CONNECTING', ...right },
  ], rows, '  ')}`;
}

const TLSA_STATE: Record<string, string> = {
  'secure-unusable': 'TLSA records, none usable: TLS mandatory, certificate not checked',
  none: 'no TLSA records (signed denial)',
  insecure: 'TLSA answer not signed: no DANE',
};

function renderDane(d: DaneView): Array<[string, string]> {
  if (d.mx === 'insecure') return [['DANE', 'MX records not signed: no DANE']];
  if (d.mx === 'failed') return [['DANE', `DNSSEC status of the MX records unknown, mail deferred: ${d.mx_reason ?? ''}`]];
  return [['DANE', 'MX records signed'], ...d.hosts.map((h): [string, string] => [`DANE ${h.host}`,
    h.tlsa === 'secure' ? `${h.usable_records} usable TLSA record(s): TLS must match them`
      : h.tlsa === 'failed' ? `TLSA lookup failed (${h.reason ?? ''})${h.address === 'insecure' ? ', host not signed: no DANE' : ': mail deferred'}`
        : TLSA_STATE[h.tlsa] ?? h.tlsa])];
}

function renderSts(s: StsView, now: number): Array<[string, string]> {
  switch (s.state) {
    case 'none':
      return [['MTA-STS', 'no policy published']];
    case 'unavailable':
      return [['MTA-STS', `published${s.id ? ` (id ${s.id})` : ''} but unavailable, delivering as without: ${s.result_type}: ${s.error}`]];
    case 'policy': {
      const rows: Array<[string, string]> = [
        ['MTA-STS', `${s.mode} (id ${s.id}), mx: ${list(s.mx ?? [])}`],
        ['MTA-STS policy', `fetched ${when(s.fetched_at!, now)}, expires ${when(s.expires_at!, now)}`],
      ];
      if (s.stale) rows.push(['MTA-STS refresh', `failed, cached policy kept: ${s.stale}`]);
      return rows;
    }
  }
}

export function renderDomain(d: DomainDetail, now: number): string {
  const head: Array<[string, string]> = [
    ['Domain', d.domain],
    ['Phase', d.phase === 'delayed' && d.delayed_until ? `delayed until ${when(d.delayed_until, now)}` : d.phase],
    ['Queue', `${d.active} active, ${d.delayed} delayed`],
    ['Consecutive failures', String(d.consecutive_failures)],
  ];
  if (d.last_error) {
    head.push(['Last error', d.last_error.reply.replace(/\s+/g, ' ')], ['Last error at', when(d.last_error.at, now)]);
    if (d.last_error.flags?.length) head.push(['Last error flags', d.last_error.flags.join('|')]);
  }
  head.push(['MX', d.mx.expires_at ? `${d.mx.phase}, expires ${when(d.mx.expires_at, now)}` : d.mx.phase]);
  if (d.dane) head.push(...renderDane(d.dane));
  if (d.mta_sts) head.push(...renderSts(d.mta_sts, now));
  for (const a of d.shaping) head.push(['Shaping', `${actionText(a)} on ${scopeText(a)} until ${when(a.until, now)} (rule ${a.rule}, after: ${a.reply.replace(/\s+/g, ' ')})`]);
  if (d.bindings.length === 0) head.push(['Bindings', 'none holding mail']);
  return fields(head) + renderMx(d, now) + renderBindings(d) + renderOtherNodes(d);
}

export function register(program: Command): void {
  adminCommand(program, 'domain <domain>', 'show one destination domain: phase, MX hosts and their addresses, '
    + 'failures, and per binding the ready queue\'s phase, the mail held, connections, throttle waits and limits in force; '
    + 'held mail and connections count every live node sharing the Redis')
    .action((domain: string, opts: AdminOptions) => run(
      opts,
      (c) => c.call('domain', { params: { domain: domain.toLowerCase() } }),
      (d) => renderDomain(d, Date.now()),
    ));
}
