// Preloaded into kinesis-mock (which binds 0.0.0.0, hard-coded) to keep it on loopback.
'use strict';
const net = require('net');
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
