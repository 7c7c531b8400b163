// Builds the dashboard into dist/: type-checks with tsc, bundles and minifies src/main.tsx and src/app.css with esbuild,
// and writes index.html with the bundle's content hash in its asset URLs (so a browser never mixes two versions).
// Run by the Conveyor.Dashboard project's build (npm run build); `node build.mjs --watch` rebuilds on change.
import { build, context } from "esbuild";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: { app: join(root, "src/main.tsx"), style: join(root, "src/app.css") },
  outdir: dist,
  bundle: true,
  minify: !watch,
  sourcemap: false,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
};

function writeIndex() {
  const hash = createHash("sha256");
  for (const file of ["app.js", "style.css"]) hash.update(readFileSync(join(dist, file)));
  const version = hash.digest("hex").slice(0, 12);
  const html = readFileSync(join(root, "src/index.html"), "utf8").replaceAll("%VERSION%", version);
  writeFileSync(join(dist, "index.html"), html);
}

if (watch) {
  const ctx = await context({ ...options, plugins: [{ name: "index", setup: b => b.onEnd(() => writeIndex()) }] });
  await ctx.watch();
} else {
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", root], { stdio: "inherit" });
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist, { recursive: true });
  await build(options);
  writeIndex();
}
