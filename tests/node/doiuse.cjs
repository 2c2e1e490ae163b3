// Checks an HTML email against caniemail's data with @jsx-email/doiuse-email.
// Usage: node tests/node/doiuse.cjs FILE CLIENT_GLOB...
// Prints {"errors": [...], "warnings": [...]} as JSON, each message once.
const fs = require("fs");
const { doIUseEmail } = require("@jsx-email/doiuse-email");

const [file, ...clients] = process.argv.slice(2);
const result = doIUseEmail(fs.readFileSync(file, "utf8"), { emailClients: clients });
const unique = (list) => [...new Set(list || [])];
process.stdout.write(
  JSON.stringify({ errors: unique(result.errors), warnings: unique(result.warnings) }, null, 1),
);
