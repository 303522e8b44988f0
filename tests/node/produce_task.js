// Sends one streamtasks task from Node, with nothing but the exported schemas, avsc and
// kafkajs: the contract of schemas/README.md, followed by a non-Python producer.
//
//   node produce_task.js BOOTSTRAP NAMESPACE EXPORT_DIR TASK ARGS_JSON TASK_ID [QUEUE]
//
// ARGS_JSON is the task's argument record as avsc takes it, e.g. '{"x": 2, "y": 3}'.
'use strict';
const fs = require('fs');
const path = require('path');
const avro = require('avsc');
const {Kafka, Partitioners, logLevel} = require('kafkajs');

const [bootstrap, namespace, dir, taskName, argsJson, taskId, queueArg] = process.argv.slice(2);
const queue = queueArg || 'default';

// 1. Load every exported schema into one registry, in index order (shared types first).
const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
const registry = {};
const types = {};
const fingerprints = {};
for (const entry of index.schemas) {
  const schema = JSON.parse(fs.readFileSync(path.join(dir, entry.file), 'utf8'));
  types[entry.name] = avro.Type.forSchema(schema, {registry});
  fingerprints[entry.name] = Buffer.from(entry.fingerprint, 'hex');
}

// 2. A single-object frame: C3 01, the 8-byte fingerprint (as in the index), the Avro body.
function frame(subject, value) {
  return Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprints[subject], types[subject].toBuffer(value)]);
}

const argsEntry = index.schemas.find((e) => e.kind === 'task-args' && e.task === taskName);
if (!argsEntry) throw new Error(`no task ${taskName} in ${dir}`);

// 3. The envelope: times in epoch milliseconds; the arguments nested as their own frame.
const envelope = {
  id: taskId,
  task: taskName,
  queue,
  attempt: 1,
  created_at: Date.now(),
  eta: null,
  expires: null,
  parent_id: null,
  root_id: null,
  workflow_id: null,
  continuation: [],
  last_error: null,
  args: frame(argsEntry.name, JSON.parse(argsJson)),
  link_error: [],
};

// 4. Produce it keyed by the task id (or your own key, for per-key order) with kafkajs's
//    Java-compatible murmur2 partitioner (DefaultPartitioner), the one streamtasks uses.
async function main() {
  const kafka = new Kafka({clientId: 'node-producer', brokers: bootstrap.split(','), logLevel: logLevel.ERROR});
  const producer = kafka.producer({createPartitioner: Partitioners.DefaultPartitioner});
  await producer.connect();
  try {
    const [meta] = await producer.send({
      topic: `${namespace}.tasks.${queue}`,
      acks: -1,
      messages: [{
        key: taskId,
        value: frame('streamtasks.TaskEnvelope', envelope),
        headers: {'st-task': taskName, 'st-id': taskId, 'st-attempt': '1'},
      }],
    });
    process.stdout.write(JSON.stringify({partition: meta.partition, offset: meta.baseOffset}));
  } finally {
    await producer.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err));
  process.exit(1);
});
