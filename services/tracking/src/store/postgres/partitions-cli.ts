import { createPgPool } from "@logistics/shared/postgres";
import { migrate } from "./migrations.js";
import { detachPartitionsOlderThan, ensurePartitions } from "./partitions.js";

const USAGE = `usage:
  shipment-store-partitions ensure [monthsAhead=3]
  shipment-store-partitions detach-older-than <YYYY-MM-DD>
environment: DATABASE_URL (its search_path selects the schema)`;

/**
 * Partition maintenance for the shipment event history, for a cron job (applies pending
 * migrations first):
 * `ensure` creates the coming months' partitions, `detach-older-than` archives old months.
 * Prints one JSON line with what it did.
 */
export async function runPartitionsCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { stdout: (line: string) => void; stderr: (line: string) => void } = {
    stdout: (line) => process.stdout.write(line),
    stderr: (line) => process.stderr.write(line),
  },
): Promise<number> {
  const [command, arg] = argv;
  const url = env["DATABASE_URL"];
  if (!url || (command !== "ensure" && command !== "detach-older-than")) {
    io.stderr(`${USAGE}\n`);
    return 2;
  }
  const pool = createPgPool({ connectionString: url, max: 1, applicationName: "shipment-store-partitions" });
  try {
    // Pending migrations first, so the CLI also works on a database no store has started on.
    await migrate(pool);
    if (command === "ensure") {
      const ahead = arg === undefined ? 3 : Number(arg);
      if (!Number.isInteger(ahead) || ahead < 0) {
        io.stderr(`monthsAhead must be a non-negative integer\n${USAGE}\n`);
        return 2;
      }
      const created = await ensurePartitions(pool, ahead);
      io.stdout(`${JSON.stringify({ command, created })}\n`);
    } else {
      const cutoff = new Date(arg ?? "");
      if (Number.isNaN(cutoff.getTime())) {
        io.stderr(`a cutoff date is required\n${USAGE}\n`);
        return 2;
      }
      const archived = await detachPartitionsOlderThan(pool, cutoff);
      io.stdout(`${JSON.stringify({ command, cutoff: cutoff.toISOString(), archived })}\n`);
    }
    return 0;
  } finally {
    await pool.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runPartitionsCli(process.argv.slice(2), process.env).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
