export { createRoundTripCoalescer, type RoundTripCoalescer, type RoundTripCoalescerOptions } from "./round-trip-coalescer.js";
