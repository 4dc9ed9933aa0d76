/**
 * The Node.js major the container images ship: the first `ARG NODE_IMAGE=node:<major>…` of the
 * Dockerfile's text, or undefined when there is none.
 */
export function imageNodeMajor(dockerfile: string): number | undefined {
  const m = /^ARG NODE_IMAGE=node:(\d+)/m.exec(dockerfile);
  return m ? Number(m[1]) : undefined;
}

/**
 * The report's line about the runtime the services ran on (they run on the harness's own Node.js,
 * `process.execPath`) against the one the images ship. CPU per scan and the highest sustained rate
 * depend on the Node.js major (perf/README.md, Runtime), so a report taken on another major than
 * production's says so.
 */
export function runtimeNote(nodeVersion: string, imageMajor: number | undefined): string {
  const major = Number(/^v?(\d+)/.exec(nodeVersion)?.[1]);
  const ran = `The services ran on Node.js ${nodeVersion.startsWith("v") ? nodeVersion : `v${nodeVersion}`} (the harness's own runtime)`;
  if (imageMajor === undefined) return `${ran}.`;
  if (major === imageMajor) return `${ran}, the major the images ship.`;
  return (
    `${ran}; the images ship Node.js ${imageMajor}: figures from another major are not production's ` +
    `(run the harness with that runtime, perf/README.md, Runtime).`
  );
}
