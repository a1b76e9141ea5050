// `impulse message show|retry|fail <ID>`: one message by its queue ID.
import type { Command } from 'commander';
import type { Attempt, MessageDetail, MessageJob } from '../../admin/protocol.js';
import { BOUNCE_CLASSES, isBounceClass } from '../../bounce/classes.js';
import { fields, formatSize, formatTime, list, plural, table, when } from '../format.js';
import { type FailOptions, failBody, withFailOptions } from './queue-actions.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

function bounceClassText(c: number | undefined): string {
  if (c === undefined) return '-';
  return isBounceClass(c) ? `${c} ${BOUNCE_CLASSES[c]}` : String(c);
}

function attemptRow(a: Attempt): string[] {
  const mx = a.mx_host && a.mx_ip ? `${a.mx_host}/${a.mx_ip}` : a.mx_host ?? a.mx_ip ?? '-';
  // The action restates the CONN_ACTION_* flag when there are flags; alone it is the only hint.
  const flags = a.flags?.length ? a.flags.join('|') : a.action ?? '-';
  const reply = a.reply.replace(/\s+/g, ' ');
  return [
    formatTime(a.at), String(a.attempt), a.outcome, mx, flags, bounceClassText(a.bounce_class), a.recipients ? `${a.recipients.join(', ')}: ${reply}` : reply,
  ];
}

function renderJob(j: MessageJob, now: number): string {
  const state = j.state === 'delayed' && j.waiting ? `delayed (${j.waiting})` : j.state;
  const head: Array<[string, string]> = [['Recipients', list(j.recipients)], ['Binding', j.binding ?? '-'], ['State', state]];
  if (j.next_attempt) head.push(['Next attempt', when(j.next_attempt, now)]);
  if (j.finished_at) head.push(['Finished', when(j.finished_at, now)]);
  const attempts = j.attempts.length === 0 ? '  no attempts yet\n' : table([
    { title: 'TIME' }, { title: '#', align: 'right' }, { title: 'OUTCOME' }, { title: 'MX-HOST/IP' },
    { title: 'FLAGS/ACTION' }, { title: 'BOUNCE-CLASS' }, { title: 'REPLY' },
  ], j.attempts.map(attemptRow), '  ');
  return `\nJob ${j.job_id}: ${j.domain}\n${fields(head, '  ')}${attempts}`;
}

export function renderMessage(m: MessageDetail, now: number): string {
  return fields([
    ['Queue ID', m.qid],
    ['Message-ID', m.message_id ?? '-'],
    ['Sender', m.sender || '<>'],
    ['Received', when(m.received_at, now)],
    ['Size', m.size_bytes === undefined ? '-' : formatSize(m.size_bytes)],
  ]) + m.jobs.map((j) => renderJob(j, now)).join('');
}

export function register(program: Command): void {
  const message = program.command('message').description('show, retry or fail one message by its queue ID');
  adminCommand(message, 'show <id>', 'show a message and, per destination domain, its recipients, state and delivery attempts')
    .action((id: string, opts: AdminOptions) => run(opts, (c) => c.call('message', { params: { id } }), (m) => renderMessage(m, Date.now())));
  adminCommand(message, 'retry <id>', 'attempt the delayed parts of a message now')
    .action((id: string, opts: AdminOptions) => run(
      opts, (c) => c.call('messageRetry', { params: { id } }), (r) => `retried ${plural(r.retried, 'job')} of ${id}\n`,
    ));
  withFailOptions(adminCommand(message, 'fail <id>', 'fail the undelivered parts of a message, as permanent failures'))
    .action((id: string, opts: FailOptions) => run(
      opts, (c) => c.call('messageFail', { params: { id }, body: failBody(opts) }), (r) => `failed ${plural(r.failed, 'job')} of ${id}\n`,
    ));
}
