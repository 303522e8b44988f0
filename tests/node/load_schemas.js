// Loads an export directory (streamtasks schemas export) into ONE avsc registry, in the
// order of its index.json, and prints {"canonical": {name: canonical form}} as JSON.
// A type defined twice, or a reference to an unknown type, makes avsc throw (exit 1).
// With a second argument, a JSON object {"subject": ..., "value": ...}: also encodes that value
// with the subject's type and prints its Avro binary encoding as "encoded" (hex).
'use strict';
const fs = require('fs');
const path = require('path');
const avro = require('avsc');

const dir = process.argv[2];
const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
const registry = {};
const canonical = {};
const types = {};
for (const entry of index.schemas) {
  const schema = JSON.parse(fs.readFileSync(path.join(dir, entry.file), 'utf8'));
  const type = avro.Type.forSchema(schema, {registry, logicalTypes: {}});
  types[entry.name] = type;
  canonical[entry.name] = JSON.stringify(type.schema());
}
const out = {canonical};
if (process.argv[3]) {
  const job = JSON.parse(process.argv[3]);
  out.encoded = types[job.subject].toBuffer(job.value).toString('hex');
}
process.stdout.write(JSON.stringify(out));
