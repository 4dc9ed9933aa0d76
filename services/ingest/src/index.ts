/** The ingest service's public entry: its definition and config for the runtime, plus the scan
 * conventions other packages rely on (event ids, status normalization). */
export { ingestConfig, type IngestConfig } from "./config.js";
export { recordedEventId } from "./event-ids.js";
export { ingestService } from "./ingest.js";
export { normalizeStatus } from "./normalize.js";
export { STREAM_MESSAGE_SPAN } from "./ingest-handlers.js";
