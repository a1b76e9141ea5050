// A fixed single-threaded JavaScript workload, none of it Impulse's code: how fast this machine runs
// the kind of work the daemon does (JSON, string and Buffer building, Map churn, short-lived objects,
// promises). Its figure divides the VM out of ours: a session whose yardstick is 1.5× slower
// than another's will show about that much more daemon CPU per message for the same code.
// Prints one JSON line; `--rounds N` (default 7) repetitions, the median and the fastest.
import { parseArgs } from 'node:util';
import { middle } from './report.mjs';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds: a whole number of at least 1, not ${JSON.stringify(values.rounds)}`);
  process.exit(2);
}

const ITERATIONS = 100_000;
const BODY = Buffer.from('X-Filler: 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmn\r\n'.repeat(70));

/** One message's worth of the daemon's kind of work; returns a number so nothing is optimised away. */
async function iteration(i, seen) {
  const data = { qid: `q${i.toString(36)}`, domain: `d${i % 50}.test`, sender: 'bench@inject.bench.test', recipients: [`u${i % 1000}@d${i % 50}.test`], receivedAt: 1_765_000_000_000 + i, attempts: 0 };
  const json = JSON.stringify(data);
  const back = JSON.parse(json);
  const args = ['evalsha', 'a'.repeat(40), '3', `bull:deliveries:${back.qid}`, 'bull:deliveries:wait', 'bull:deliveries:events', json, String(back.receivedAt)];
  let command = `*${args.length}\r\n`;
  for (const arg of args) command += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  const wire = Buffer.concat([Buffer.from(command), BODY.subarray(0, 2048), BODY.subarray(2048)]);
  seen.set(back.qid, { wire, at: i });
  if (seen.size > 500) seen.delete(seen.keys().next().value);
  const reply = await Promise.resolve(wire.indexOf('\r\n.\r\n') + wire.length);
  return reply + back.recipients[0].length;
}

async function round() {
  const seen = new Map();
  let sum = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) sum += await iteration(i, seen);
  const ns = Number(process.hrtime.bigint() - start) / ITERATIONS;
  if (sum === 0) throw new Error('unreachable: keeps the sum live');
  return ns;
}

await round(); // warm-up: the JIT compiles before anything is timed
const times = [];
for (let r = 0; r < rounds; r++) times.push(await round());
console.log(JSON.stringify({ yardstick_ns_per_iteration: Math.round(middle(times)), fastest_ns: Math.round(Math.min(...times)), rounds, node: process.version }));
