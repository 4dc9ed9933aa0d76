import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "@logistics/shared/testing";

/** The README's verification function. */
export type ReadmeVerifier = (
  rawBody: Buffer | string,
  signatureHeader: string | undefined,
  secret: string,
  toleranceSeconds?: number,
  nowSeconds?: number,
) => boolean;

/**
 * Extracts the JavaScript block between the `signature-snippet` markers of the service README,
 * writes it to a temporary module and imports it, so tests run exactly what receivers copy.
 */
export async function loadReadmeVerifier(): Promise<ReadmeVerifier> {
  const readme = await readFile(join(repoRoot, "services", "notification", "README.md"), "utf8");
  const match = /<!-- signature-snippet:start -->\s*```js\n([\s\S]*?)```\s*<!-- signature-snippet:end -->/.exec(readme);
  if (!match?.[1]) throw new Error("README has no signature snippet between the markers");
  const dir = await mkdtemp(join(tmpdir(), "readme-snippet-"));
  try {
    const file = join(dir, "verify.mjs");
    await writeFile(file, match[1]);
    const mod: unknown = await import(pathToFileURL(file).href);
    const fn = (mod as { verifyLogisticsWebhook?: unknown }).verifyLogisticsWebhook;
    if (typeof fn !== "function") throw new Error("the snippet does not export verifyLogisticsWebhook");
    return fn as ReadmeVerifier;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
