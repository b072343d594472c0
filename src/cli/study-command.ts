// `graft study FILE`: every cell of a study trained as a normal run folder (finished ones skipped,
// unfinished ones resumed), then the table, the pictures and report.html of the whole study.
import { join } from 'node:path';
import { loadStudyFile } from '../study/study-file.js';
import { STUDY_FILE, prepareStudyFolder, readStudyPlan, runStudy, type StudyPlan } from '../study/runner.js';
import { writeRunReport, writeStudyReport } from '../report/study-output.js';
import { existsSync } from 'node:fs';
import { RunFolderError } from '../errors.js';
import { tableMarkdown } from '../report/study-table.js';
import { runTraining } from './train-command.js';
import { runStudyOnQueue, runWorker, studyStatus } from '../study/queue.js';

export interface StudyCommandOptions {
  output?: string;
  /** redis://HOST:PORT: put the cells on a BullMQ queue for `graft worker`s instead of training them here. */
  queue?: string;
  queueName?: string;
  /** Print each cell's state and stop. */
  status?: boolean;
}

/** The study's folder: --output, else the file's "output", else runs/<name>. */
export function studyOutput(file: string, o: StudyCommandOptions): { plan: StudyPlan; output: string } {
  const study = loadStudyFile(file);
  const output = o.output ?? study.output ?? join('runs', study.name);
  return { plan: prepareStudyFolder(study, output), output };
}

/** Writes the table (and what else the study's results give) from the finished cells. */
export async function writeStudyResults(output: string, log: (line: string) => void = console.log): Promise<void> {
  const plan = readStudyPlan(output);
  const { results } = await writeStudyReport(output, plan);
  log(`\n${tableMarkdown(results.table)}`);
  if (results.missing.length) log(`${results.missing.length} cell${results.missing.length > 1 ? 's' : ''} not finished: ${results.missing.join(', ')}`);
  log(`table.md / .csv / .json / .tex, figures/ and report.html in ${output}`);
}

export async function studyCommand(file: string, o: StudyCommandOptions, log: (line: string) => void = console.log): Promise<void> {
  if (o.status) {
    const study = loadStudyFile(file);
    const output = o.output ?? study.output ?? join('runs', study.name);
    const plan = readStudyPlan(output);
    const status = await studyStatus(plan, output, o.queue ? { url: o.queue, name: o.queueName } : undefined);
    const width = Math.max(...status.map((s) => s.id.length));
    for (const s of status) log(`${s.id.padEnd(width)}  ${s.state}${s.detail ? `  ${s.detail}` : ''}`);
    const n = (st: string) => status.filter((s) => s.state === st).length;
    log(`${n('done')} done · ${n('running')} running · ${n('waiting') + n('not queued')} waiting · ${n('failed')} failed (of ${status.length})`);
    return;
  }
  const { plan, output } = studyOutput(file, o);
  const outcome = o.queue
    ? await runStudyOnQueue(plan, output, { url: o.queue, name: o.queueName }, log)
    : await runStudy(plan, output, (config, claim) => runTraining(config, log, claim), log);
  await writeStudyResults(output, log);
  if (outcome.failed.length) throw new Error(`${outcome.failed.length} of ${plan.cells.length} cells failed (${outcome.failed.map((f) => f.id).join(', ')}); run the study again to retry them`);
}

/** `graft worker --queue URL`: trains cells from the queue into their study folders. */
export async function workerCommand(o: { queue: string; queueName?: string; lockSeconds?: number; untilEmpty?: boolean }, log: (line: string) => void = console.log): Promise<void> {
  await runWorker({ url: o.queue, name: o.queueName, lockSeconds: o.lockSeconds, untilEmpty: o.untilEmpty }, (config, claim) => runTraining(config, log, claim), log);
}

/** `graft report DIR`: the page of a study folder or of a run folder. */
export async function reportCommand(dir: string, log: (line: string) => void = console.log): Promise<void> {
  if (existsSync(join(dir, STUDY_FILE))) {
    await writeStudyResults(dir, log);
    return;
  }
  if (!existsSync(join(dir, 'report.json'))) {
    throw new RunFolderError(`${dir} is neither a finished run folder (no report.json) nor a study folder (no ${STUDY_FILE}); pass the --output folder of graft train or graft study`);
  }
  log(`report: ${await writeRunReport(dir)}`);
}
