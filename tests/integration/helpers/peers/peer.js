// Node.js TLS peers for the interop tests (the tls module only).
//   node peer.js server PORT CERT KEY CA SECONDS [require|none]
//       127.0.0.1:PORT, requestCert + rejectUnauthorized against CA (none:
//       never requests a client certificate); each
//       connection gets "HTTP/1.1 200" with "hello from node" and the
//       client's URI SAN once it has sent a request head.
//   node peer.js client PORT CERT KEY CA [PATH]
//       connects to localhost:PORT (name checked), sends GET PATH (default /), prints
//       the answer; exit 1 on any failure.
'use strict';
const tls = require('tls');
const fs = require('fs');
const [mode, port, cert, key, ca, arg6, arg7] = process.argv.slice(2);
const secs = mode === 'server' ? arg6 : undefined;
const path = mode === 'client' ? (arg6 || '/') : '/';
const ask = !(mode === 'server' && arg7 === 'none');
const opts = { cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca) };

if (mode === 'server') {
  const srv = tls.createServer({ ...opts, requestCert: ask, rejectUnauthorized: ask }, (s) => {
    const c = s.getPeerCertificate();
    const who = (c && c.subjectaltname) || 'none';
    let got = '';
    s.setTimeout(10000, () => s.destroy());
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n') || got.includes('\n\n') || got.length > 4096) {
        const body = 'hello from node, client ' + who + '\n';
        s.end('HTTP/1.1 200 OK\r\nContent-Length: ' + body.length + '\r\nConnection: close\r\n\r\n' + body);
        console.log('served ' + who);
      }
    });
    s.on('error', () => {});
  });
  srv.on('tlsClientError', (e) => console.log('refused: ' + e.message));
  srv.listen(Number(port), '127.0.0.1', () => console.log('listening'));
  setTimeout(() => process.exit(0), Number(secs || 60) * 1000).unref();
  setTimeout(() => {}, Number(secs || 60) * 1000);
} else if (mode === 'client') {
  const s = tls.connect({ ...opts, host: '127.0.0.1', port: Number(port), servername: 'localhost' }, () => {
    s.write('GET ' + path + ' HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  });
  let got = Buffer.alloc(0);
  s.setTimeout(10000, () => { console.error('client: timeout'); process.exit(1); });
  s.on('data', (d) => { got = Buffer.concat([got, d]); });
  s.on('end', () => { process.stdout.write(got); process.exit(got.length ? 0 : 1); });
  s.on('close', () => { process.stdout.write(got); process.exit(got.length ? 0 : 1); });
  s.on('error', (e) => { console.error('client: ' + e.message); process.exit(1); });
} else {
  console.error('usage: node peer.js server|client ...');
  process.exit(2);
}
