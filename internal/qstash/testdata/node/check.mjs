// Cross-check for internal/qstash (run by TestOfficialReceiverAgrees, not by hand):
// reads a JSON request on stdin, verifies the Go-made tokens with the official
// @upstash/qstash Receiver, signs tokens the way QStash does with jose, and prints
// the results as JSON on stdout.
import { readFileSync } from "node:fs";
import { createHash, randomUUID, webcrypto } from "node:crypto";

// Node 18 (Debian bookworm's) has no global crypto, which jose needs; the
// packages are imported after it is in place.
globalThis.crypto ??= webcrypto;
const { Receiver } = await import("@upstash/qstash");
const { SignJWT } = await import("jose");

const request = JSON.parse(readFileSync(0, "utf8"));

const receiver = new Receiver({
  currentSigningKey: request.currentSigningKey,
  nextSigningKey: request.nextSigningKey,
  devMode: false,
});

const checks = [];
for (const check of request.checks) {
  try {
    const accepted = await receiver.verify({
      signature: check.signature,
      body: check.body,
      url: check.url,
    });
    checks.push({ name: check.name, accepted, error: "" });
  } catch (error) {
    checks.push({ name: check.name, accepted: false, error: String(error?.message ?? error) });
  }
}

// As QStash signs: HS256, iss Upstash, sub the destination, nbf = iat = now,
// exp = now + 5 min, a random jti, and body = base64url(sha256(body)) with padding.
async function sign({ key, url, body, padded }) {
  const now = Math.floor(Date.now() / 1000);
  let hash = createHash("sha256").update(body, "utf8").digest("base64").replaceAll("+", "-").replaceAll("/", "_");
  if (!padded) hash = hash.replace(/=+$/, "");
  return await new SignJWT({ body: hash })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer("Upstash")
    .setSubject(url)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 300)
    .setJti("jwt_" + randomUUID())
    .sign(new TextEncoder().encode(key));
}

const signed = {
  padded: await sign({ ...request.sign, padded: true }),
  unpadded: await sign({ ...request.sign, padded: false }),
};

const version = JSON.parse(
  readFileSync(new URL("./node_modules/@upstash/qstash/package.json", import.meta.url), "utf8"),
).version;

process.stdout.write(JSON.stringify({ qstashVersion: version, checks, signed }));
