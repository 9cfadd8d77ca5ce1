// Preloaded into kinesis-mock with `node --require` (infra/local/stack.py). Two repairs:
//
// 1. Loopback only. kinesis-mock binds 0.0.0.0, hard-coded: every listen() is moved to
//    CDC_BIND_HOST (default 127.0.0.1).
//
// 2. Crash-safe persistence. kinesis-mock saves its whole state every PERSIST_INTERVAL by
//    truncating PERSIST_PATH/kinesis-data.json and writing it again in place, so a SIGKILL
//    during a save leaves a cut file and every stream is gone at the next start. The save
//    goes through fs.createWriteStream; for that one file it now writes a sibling `.tmp`,
//    fsyncs it, and renames it over the old file: a crash leaves the previous snapshot or
//    the new one, never half of one.
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');

const host = process.env.CDC_BIND_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length && typeof args[0] === 'object' && args[0] !== null) {
    args[0] = { ...args[0], host };
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const port = args[0];
    const rest = args.slice(1).filter((a) => typeof a === 'function');
    args = [port, host, ...rest];
  }
  return listen.apply(this, args);
};

if (process.env.PERSIST_PATH) {
  const snapshot = path.resolve(process.env.PERSIST_PATH, process.env.PERSIST_FILE_NAME || 'kinesis-data.json');
  const createWriteStream = fs.createWriteStream;
  fs.createWriteStream = function (target, options) {
    if (typeof target !== 'string' || path.resolve(target) !== snapshot) {
      return createWriteStream.apply(this, arguments);
    }
    const partial = `${snapshot}.tmp`;
    const stream = createWriteStream.call(this, partial, options);
    // kinesis-mock drops every listener once the file is open, so the hook sits on _destroy,
    // which runs after 'finish' (autoDestroy) with the fd still open, or on a failed write.
    const destroy = stream._destroy;
    stream._destroy = function (error, callback) {
      const complete = !error && this.writableFinished && typeof this.fd === 'number';
      if (complete) fs.fsyncSync(this.fd);
      destroy.call(this, error, (closeError) => {
        if (complete && !closeError) {
          fs.renameSync(partial, snapshot);
          const dir = fs.openSync(path.dirname(snapshot), 'r');
          try { fs.fsyncSync(dir); } finally { fs.closeSync(dir); }
        }
        callback(closeError);
      });
    };
    return stream;
  };
}
