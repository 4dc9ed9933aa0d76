import { describe, expect, it } from "vitest";
import { hugePagesFor, memorySettings, serverMemory } from "./server-memory.js";

const GiB = 2 ** 30;

describe("serverMemory", () => {
  it("gives a quarter of RAM to shared_buffers and twice that to effective_cache_size on a small machine", () => {
    expect(serverMemory(8 * GiB)).toEqual({ sharedBuffersMiB: 2048, effectiveCacheSizeMiB: 4096 });
  });

  it("caps shared_buffers at 4 GiB on a larger machine shared with other work", () => {
    expect(serverMemory(24 * GiB)).toEqual({ sharedBuffersMiB: 4096, effectiveCacheSizeMiB: 8192 });
  });

  it("never goes below PostgreSQL's 128 MB default", () => {
    expect(serverMemory(256 * 2 ** 20)).toEqual({ sharedBuffersMiB: 128, effectiveCacheSizeMiB: 128 });
  });

  it("renders postgresql.conf values", () => {
    expect(memorySettings({ sharedBuffersMiB: 4096, effectiveCacheSizeMiB: 8192 })).toEqual({
      shared_buffers: "'4096MB'",
      effective_cache_size: "'8192MB'",
    });
  });
});

describe("hugePagesFor", () => {
  const meminfo = (free: number) => `MemTotal:       24000000 kB\nHugePages_Total:    ${free}\nHugePages_Free:     ${free}\nHugepagesize:       2048 kB\n`;

  it("turns huge pages on when the free ones hold shared_buffers with room to spare", () => {
    expect(hugePagesFor(meminfo(2300), 4096).setting).toBe("on");
  });

  it("leaves them off, saying what is missing, when too few or none are reserved", () => {
    expect(hugePagesFor(meminfo(2048), 4096)).toMatchObject({ setting: "off", note: expect.stringContaining("4506 MB needed") });
    expect(hugePagesFor(meminfo(0), 4096)).toMatchObject({ setting: "off", note: expect.stringContaining("vm.nr_hugepages") });
    expect(hugePagesFor("", 4096).setting).toBe("off");
  });
});
