// autocannon (npm) against the relay (POST /chat.send): `connections` closed-loop connections, one call in
// flight each, for `duration` seconds. Each request's body gets its own nonce and a session key taken in
// turn from `sessions` keys; the answer is checked for the nonce as ocprobe checks it.
//
//   node bench/autocannon_run.js URL CONNECTIONS DURATION_S SESSIONS PREFIX
//
// prints one JSON object: calls, ok, non2xx, errors, wall_s, calls_per_s. The token comes from
// $OPENCLAW_GATEWAY_TOKEN.
'use strict'

const path = require('path')
const autocannon = require(path.join(__dirname, 'node_modules', 'autocannon'))

const [url, connections, duration, sessions, prefix] = process.argv.slice(2)
if (!/^http:\/\/(127\.0\.0\.1|localhost):\d+\//.test(url || '')) {
  console.error('usage: node autocannon_run.js http://127.0.0.1:PORT/chat.send CONNECTIONS DURATION_S SESSIONS PREFIX')
  process.exit(2)
}
const token = process.env.OPENCLAW_GATEWAY_TOKEN
const tag = Math.random().toString(16).slice(2, 8)
const K = parseInt(sessions, 10)
let i = 0
let ok = 0

const instance = autocannon({
  url,
  connections: parseInt(connections, 10),
  duration: parseFloat(duration),
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  requests: [{
    setupRequest (req, context) {
      i += 1
      context.nonce = `ok-${i}-${tag}`
      req.body = JSON.stringify({
        sessionKey: `${prefix}-s${(i % K) + 1}`,
        message: `Reply with exactly this token and nothing else: ${context.nonce}`
      })
      return req
    },
    onResponse (status, body, context) {
      if (status === 200) {
        try {
          const answer = JSON.parse(body)
          if (answer.ok && String(answer.reply).includes(context.nonce)) ok += 1
        } catch (e) {}
      }
    }
  }]
}, (err, res) => {
  if (err) {
    console.error(String(err))
    process.exit(1)
  }
  const calls = res['2xx'] + res.non2xx
  console.log(JSON.stringify({
    calls,
    ok,
    non2xx: res.non2xx,
    errors: res.errors,
    timeouts: res.timeouts,
    wall_s: res.duration,
    calls_per_s: calls / res.duration
  }))
})
process.once('SIGTERM', () => instance.stop())
