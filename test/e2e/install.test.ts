// Installing as operators and CI install: `npm ci` accepts the lock file, and the Dockerfile's
// build, run step by step in a temp copy (npm ci, build, prune to production dependencies), gives
// a tree from which the daemon starts and delivers, so a runtime dependency kept only among the
// dev dependencies fails here rather than in an operator's container.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { nodeFlagsOf, startDaemon } from '../helpers/daemon.js';
import { runToEnd } from '../helpers/run.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'impulse-install-'));
let world: World;

before(async () => {
  world = await buildWorld({ zone: mxZone({ 'prod.test': '127.0.0.160' }), sinks: { prod: { host: '127.0.0.160' } } });
});

after(async () => {
  await world.close();
  rmSync(scratch, { recursive: true, force: true });
});

async function sh(command: string, cwd: string, timeoutMs = 300_000): Promise<string> {
  const r = await runToEnd('sh', ['-c', command], { cwd, timeoutMs, what: command });
  assert.equal(r.code, 0, `${command} failed in ${cwd}:\n${r.output}`);
  return r.output;
}

/** A COPY: its sources, relative to `context`, to its destination under `into` (a directory when it ends in /). */
function copy(args: string, context: string, into: string): void {
  const parts = args.split(/\s+/);
  const dest = parts.at(-1)!;
  for (const from of parts.slice(0, -1)) {
    const to = dest.endsWith('/') ? join(into, dest, basename(from)) : join(into, dest);
    mkdirSync(dirname(to), { recursive: true });
    cpSync(join(context, from), to, { recursive: true });
  }
}

interface Step {
  stage: string;
  instruction: string;
  args: string;
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped, each with its stage's name. */
function dockerSteps(): Step[] {
  const lines = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n');
  const steps: Step[] = [];
  let stage = '';
  for (const line of lines.map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
    const [, instruction, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (instruction === 'FROM') stage = /\bAS\s+(\S+)/i.exec(args!)?.[1] ?? 'runtime';
    steps.push({ stage, instruction: instruction!, args: args! });
  }
  return steps;
}

test('npm ci accepts the lock file: every platform\'s optional packages are in it and it matches package.json', async () => {
  const dir = join(scratch, 'ci');
  mkdirSync(dir);
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(root, f), join(dir, f));
  const out = await sh('npm ci --dry-run --ignore-scripts --no-audit --no-fund', dir);
  assert.match(out, /add bullmq /);
});

test('the Dockerfile\'s build, run in a temp copy, gives a production tree the daemon starts and delivers from', async () => {
  const steps = dockerSteps();
  const build = join(scratch, 'app');
  const runtime = join(scratch, 'opt');
  mkdirSync(build);
  mkdirSync(runtime);
  for (const step of steps.filter((s) => s.stage === 'build')) {
    if (step.instruction === 'COPY') copy(step.args, root, build);
    if (step.instruction === 'RUN') await sh(step.args, build);
  }
  // The runtime stage takes what it names from the build stage and the checkout; its RUN steps set up the image's user and paths.
  for (const step of steps.filter((s) => s.stage === 'runtime' && s.instruction === 'COPY')) {
    const fromBuild = /^--from=build\s+(.*)$/.exec(step.args);
    if (fromBuild) copy(fromBuild[1]!.replace(/(^|\s)\/app\//g, '$1'), build, runtime);
    else copy(step.args, root, runtime);
  }
  assert.ok(existsSync(join(runtime, 'node_modules', 'bullmq')), 'production dependencies are in the tree');
  assert.ok(!existsSync(join(runtime, 'node_modules', 'typescript')), 'dev dependencies were pruned');
  assert.ok(existsSync(join(runtime, 'config', 'impulse.schema.json')), 'the schema the reference config names is beside it');
  // The daemon runs as the image runs it: node's flags, then the entry point under /opt/impulse.
  const command = JSON.parse(steps.find((s) => s.instruction === 'ENTRYPOINT')!.args) as string[];
  assert.equal(command[0], 'node');
  const entry = /^\/opt\/impulse\/(\S+)$/.exec(command.at(-1)!)![1]!;

  const daemon = await startDaemon(world.config, { cliPath: join(runtime, entry), dir: world.dir, nodeArgs: nodeFlagsOf(command) });
  try {
    const to = 'ops@prod.test';
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
    await world.sinks.prod!.waitForRecipients([to]);
    const delivered = await daemon.waitForLog((r) => r.event === 'delivery');
    assert.equal(delivered.domain, 'prod.test');
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});
