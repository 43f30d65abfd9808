// nodemailer against Tern's submission ports, driven by
// tests/e2e/test_submission.py: one message through 587 (STARTTLS required)
// and one through 465 (implicit TLS), each to a local and a remote
// recipient; then a foreign From: (553) and a wrong password (535). One JSON
// object a line on stdout: {"case": ..., "ok": bool, "code": reply code}.
//
// usage: node nodemailer_submit.js HOST PORT587 PORT465 USER PASS LOCAL_RCPT REMOTE_RCPT
'use strict';

const nodemailer = require('nodemailer');

const [host, p587, p465, user, pass, local, remote] = process.argv.slice(2);

function transport(port, secure, password) {
	return nodemailer.createTransport({
		host,
		port: Number(port),
		secure,
		requireTLS: !secure,
		auth: { user, pass: password },
		tls: { rejectUnauthorized: false },
		connectionTimeout: 10000,
		greetingTimeout: 10000,
		socketTimeout: 20000,
	});
}

async function run(name, port, secure, password, from) {
	const t = transport(port, secure, password);
	try {
		await t.sendMail({
			from,
			to: [local, remote],
			subject: 'nodemailer ' + name,
			text: 'sent by nodemailer (' + name + ')\n',
		});
		process.stdout.write(JSON.stringify({ case: name, ok: true }) + '\n');
	} catch (e) {
		process.stdout.write(
			JSON.stringify({ case: name, ok: false, code: e.responseCode || 0, error: String(e.message) }) + '\n');
	} finally {
		t.close();
	}
}

(async () => {
	await run('587', p587, false, pass, user);
	await run('465', p465, true, pass, user);
	await run('badfrom', p587, false, pass, 'Someone <someone@remote.test>');
	await run('badpass', p465, true, pass + 'x', user);
})();
