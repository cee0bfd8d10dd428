// Starts a real `parley dev` for the tests: the binary built from this
// checkout, its own PostgreSQL in a temporary folder, the offline model.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs from web/.build/test). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

let built: string | undefined;

/**
 * parleyBinary returns PARLEY_BIN, or builds cmd/parley into a temporary
 * folder once per process (Go's build cache makes that quick).
 */
export function parleyBinary(): string {
  if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
  if (built) return built;
  const out = join(mkdtempSync(join(tmpdir(), "parley-bin-")), "parley");
  try {
    execFileSync("go", ["build", "-o", out, "./cmd/parley"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  } catch (err) {
    throw new Error(`building cmd/parley failed (is Go 1.26 on PATH? or set PARLEY_BIN): ${err}`);
  }
  built = out;
  return out;
}

/** DevServer is a running `parley dev`. */
export interface DevServer {
  /** The API's base URL, e.g. http://127.0.0.1:41234. */
  url: string;
  /** What the server logged so far (for failure messages). */
  output(): string;
  /** SIGTERM, wait for the exit, remove its data. */
  stop(): Promise<void>;
}

/**
 * startParley runs `parley dev` on a free loopback port with its own
 * database (DATABASE_URL is not passed on: the dev server starts a private
 * PostgreSQL from the machine's binaries) and the given extra environment.
 */
export async function startParley(env: Record<string, string> = {}): Promise<DevServer> {
  const bin = parleyBinary();
  const dataDir = mkdtempSync(join(tmpdir(), "parley-web-"));
  // As root, pglocal runs PostgreSQL as the postgres user, which must be
  // able to enter the folder.
  chmodSync(dataDir, 0o711);
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && k !== "DATABASE_URL" && k !== "PORT" && k !== "ALLOWED_ORIGINS") childEnv[k] = v;
  }
  Object.assign(childEnv, { PORT: "0", LOG_FORMAT: "text", LOG_LEVEL: "warn" }, env);
  const child = spawn(bin, ["dev", "--data-dir", dataDir], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));

  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`parley dev did not start within 60s:\n${out}`)), 60_000);
    const check = () => {
      const m = /Parley dev server: (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]!);
      }
    };
    child.stdout.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`parley dev exited (${code}) before serving:\n${out}`));
    });
  });
  await waitHealthy(url, child);
  return {
    url,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(killer);
      if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function waitHealthy(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`parley dev at ${url} never became healthy`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** randomUser returns a new user id, so each test has its own limits and data. */
export function randomUser(): string {
  return crypto.randomUUID();
}
