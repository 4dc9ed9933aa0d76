import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { resolveWebhookTarget, WebhookUrlError, type WebhookTargetPolicy } from "./webhook-target.js";

const policy = (over: Partial<WebhookTargetPolicy> = {}): WebhookTargetPolicy => ({
  allowHttp: false,
  allow: { hosts: [], cidrs: [] },
  resolve: async (host) => {
    const table: Record<string, string[]> = {
      "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
      "rebound.example.com": ["93.184.216.34", "10.0.0.7"],
      "internal.example.com": ["192.168.0.10"],
    };
    const found = table[host];
    if (!found) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    return found.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  },
  ...over,
});

const problemOf = async (url: string, p = policy()) => {
  try {
    await resolveWebhookTarget(url, p);
    return "ok";
  } catch (err) {
    assert.ok(err instanceof WebhookUrlError);
    return err.problem;
  }
};

describe("resolveWebhookTarget", () => {
  it("names the setting that allows http or a private address in development", async () => {
    await assert.rejects(resolveWebhookTarget("http://hooks.example.com/x", policy()), /must use https.*NOTIFICATION_ALLOW_HTTP=true/);
    await assert.rejects(
      resolveWebhookTarget("https://internal.example.com/x", policy()),
      /internal\.example\.com resolves to an address that is not public.*NOTIFICATION_WEBHOOK_ALLOW_HOSTS or NOTIFICATION_WEBHOOK_ALLOW_CIDRS/,
    );
  });

  it("tells the caller a resolved name's address only in the operator's detail, and a literal address in both", async () => {
    const named = await resolveWebhookTarget("https://internal.example.com/x", policy()).catch((e: unknown) => e as WebhookUrlError);
    assert.ok(named instanceof WebhookUrlError);
    assert.doesNotMatch(named.message, /192\.168/);
    assert.match(named.detail, /resolves to 192\.168\.0\.10, which is not a public address/);
    await assert.rejects(resolveWebhookTarget("https://10.1.2.3/x", policy()), /10\.1\.2\.3, which is not a public address/);
  });

  it("accepts an https URL whose every address is public, pinning the first", async () => {
    const t = await resolveWebhookTarget("https://hooks.example.com/x", policy());
    assert.equal(t.address, "93.184.216.34");
  });

  it("requires https unless http is allowed", async () => {
    assert.equal(await problemOf("http://hooks.example.com/x"), "invalid");
    assert.equal(await problemOf("http://hooks.example.com/x", policy({ allowHttp: true })), "ok");
    assert.equal(await problemOf("ftp://hooks.example.com/x", policy({ allowHttp: true })), "invalid");
  });

  it("refuses hosts that are or resolve (even partly) to non-public addresses", async () => {
    for (const url of [
      "https://internal.example.com/",
      "https://rebound.example.com/",
      "https://127.0.0.1/",
      "https://[::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://2130706433/",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/",
      "https://[fd00::1]/",
    ]) assert.equal(await problemOf(url), "forbidden", url);
  });

  it("refuses credentials in the URL and hosts that do not resolve", async () => {
    assert.equal(await problemOf("https://user:pw@hooks.example.com/"), "invalid");
    assert.equal(await problemOf("https://nowhere.example.com/"), "invalid");
  });

  it("lets allow-listed hosts and ranges through", async () => {
    assert.equal(await problemOf("https://internal.example.com/", policy({ allow: { hosts: ["internal.example.com"], cidrs: [] } })), "ok");
    assert.equal(await problemOf("https://internal.example.com/", policy({ allow: { hosts: [], cidrs: ["192.168.0.0/16"] } })), "ok");
    assert.equal(await problemOf("https://[::1]/", policy({ allow: { hosts: ["[::1]"], cidrs: [] } })), "ok");
  });
});
