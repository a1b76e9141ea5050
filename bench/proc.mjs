// What /proc says about a process: CPU time, memory, children. Linux only, like the benchmark.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

// USER_HZ: 100 on every Linux this runs on (`getconf CLK_TCK`); /proc/<pid>/stat counts in it.
const TICKS_PER_S = 100;

function statFields(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is in parentheses and may contain spaces: fields start after the last ')'.
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of the process itself, in seconds. */
export function cpuSeconds(pid) {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / TICKS_PER_S;
}

function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const rssKb = (pid) => statusKb(pid, 'VmRSS');
export const peakRssKb = (pid) => statusKb(pid, 'VmHWM');

/** Starts VmHWM over from the current RSS (Linux ≥ 4.0), so a run's phases each get their own peak. */
export function resetPeakRss(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

function childrenOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN: scan every process for its parent.
    return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => {
      try {
        return Number(statFields(p)[1]) === pid;
      } catch {
        return false;
      }
    });
  }
}

/** The pid of the daemon's embedded redis-server, or undefined. */
export function redisChildOf(pid) {
  return childrenOf(pid).find((child) => {
    try {
      return readFileSync(`/proc/${child}/comm`, 'utf8').includes('redis');
    } catch {
      return false;
    }
  });
}
