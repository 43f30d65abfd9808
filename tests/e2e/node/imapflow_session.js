// A real Node mail client session against Tern, driven by
// tests/e2e/test_imap_clients.py: nodemailer sends three messages (one with an
// attachment) through the SMTP port, then imapflow lists mailboxes, opens INBOX,
// fetches envelope/flags/bodyStructure/source of every message, marks one \Seen,
// moves one to Archive, appends one to Drafts, waits in IDLE for a delivery the
// Python side makes, and logs out. Progress lines and the final result are JSON,
// one object a line, on stdout ({"event": ...}); the Python test asserts on them.
//
// usage: node imapflow_session.js HOST IMAP_PORT SMTP_PORT USER PASS SECURE(0|1)
'use strict';

const { ImapFlow } = require('imapflow');
const nodemailer = require('nodemailer');

const [host, imapPort, smtpPort, user, pass, secureArg] = process.argv.slice(2);
const secure = secureArg === '1';

function out(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

function withTimeout(promise, ms, what) {
	let timer;
	return Promise.race([
		promise,
		new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error('timeout: ' + what)), ms);
		}),
	]).finally(() => clearTimeout(timer));
}

// A structure summary the test can compare: type, parameters that matter, children.
function summarize(node) {
	if (!node) {
		return null;
	}
	const s = { type: node.type };
	if (node.disposition) {
		s.disposition = node.disposition;
	}
	if (node.dispositionParameters && node.dispositionParameters.filename) {
		s.filename = node.dispositionParameters.filename;
	}
	if (node.encoding) {
		s.encoding = node.encoding;
	}
	if (node.size !== undefined) {
		s.size = node.size;
	}
	if (node.childNodes) {
		s.children = node.childNodes.map(summarize);
	}
	return s;
}

async function send() {
	const transport = nodemailer.createTransport({
		host, port: Number(smtpPort), secure: false,
		// the server offers STARTTLS with a self-signed certificate
		tls: { rejectUnauthorized: false },
		connectionTimeout: 10000, greetingTimeout: 10000, socketTimeout: 15000,
	});
	const sent = [];
	for (let i = 1; i <= 3; i++) {
		const m = {
			from: `Node Sender <node${i}@example.net>`,
			to: user,
			subject: `node message ${i}`,
			messageId: `<node${i}@example.net>`,
			text: `Hello from nodemailer, message ${i}.\n`,
		};
		if (i === 2) {
			m.attachments = [{
				filename: 'report.bin',
				content: Buffer.from(Array.from({ length: 3000 }, (_, k) => k % 256)),
				contentType: 'application/octet-stream',
			}];
		}
		const info = await transport.sendMail(m);
		sent.push({ messageId: info.messageId, accepted: info.accepted, response: info.response });
	}
	transport.close();
	return sent;
}

// imapflow logs "Initiated IDLE" when the server's continuation arrives: only
// then is the session really idling, so only then may the Python side act.
let idleAcks = 0;
function stderrLog(level) {
	return (entry) => {
		let text;
		try {
			text = JSON.stringify(entry);
		} catch {
			text = String(entry && entry.msg);
		}
		process.stderr.write(level + ' ' + text + '\n');
	};
}
const logger = {
	debug: (entry) => {
		if (entry && typeof entry.msg === 'string' && entry.msg.startsWith('Initiated IDLE')) {
			idleAcks++;
		}
	},
	info: () => {},
	warn: stderrLog('warn'),
	error: stderrLog('error'),
};

async function idleAcknowledged(n) {
	const start = Date.now();
	while (idleAcks < n && Date.now() - start < 10000) {
		await new Promise((r) => setTimeout(r, 20));
	}
	return idleAcks >= n;
}

async function main() {
	const result = { sent: await send() };
	out({ event: 'sent' });

	const client = new ImapFlow({
		host, port: Number(imapPort), secure,
		auth: { user, pass },
		tls: { rejectUnauthorized: false },
		logger,
		disableAutoIdle: true,
		connectionTimeout: 10000, greetingTimeout: 10000, socketTimeout: 30000,
	});
	await client.connect();
	result.secure = client.secureConnection;
	result.capabilities = Array.from(client.capabilities.keys()).sort();
	result.enabled = Array.from(client.enabled || []).sort();

	const list = await client.list();
	result.list = list.map((b) => ({ path: b.path, specialUse: b.specialUse || null,
		delimiter: b.delimiter, flags: Array.from(b.flags || []).sort() }));

	const mb = await client.mailboxOpen('INBOX');
	result.inbox = { exists: mb.exists, uidValidity: String(mb.uidValidity), uidNext: mb.uidNext,
		permanentFlags: Array.from(mb.permanentFlags || []).sort() };

	const msgs = await client.fetchAll('1:*', { uid: true, envelope: true, flags: true,
		bodyStructure: true, source: true, size: true, internalDate: true });
	result.messages = msgs.map((m) => ({
		seq: m.seq, uid: m.uid, size: m.size,
		messageId: m.envelope.messageId, subject: m.envelope.subject,
		from: (m.envelope.from || []).map((a) => a.address),
		to: (m.envelope.to || []).map((a) => a.address),
		flags: Array.from(m.flags || []).sort(),
		internalDate: m.internalDate ? m.internalDate.toISOString() : null,
		structure: summarize(m.bodyStructure),
		sourceLength: m.source.length,
		source: m.source.toString('latin1'),
	}));

	const byId = {};
	for (const m of msgs) {
		byId[m.envelope.messageId] = m;
	}
	const first = byId['<node1@example.net>'];
	const second = byId['<node2@example.net>'];
	if (!first || !second) {
		throw new Error('sent messages not found in INBOX: ' + Object.keys(byId).join(' '));
	}
	// the attachment through imapflow's download (BINARY.PEEK[2] when offered)
	const dl = await client.download(String(second.uid), '2', { uid: true });
	const chunks = [];
	for await (const chunk of dl.content) {
		chunks.push(chunk);
	}
	const body = Buffer.concat(chunks);
	let same = body.length === 3000;
	for (let k = 0; same && k < 3000; k++) {
		same = body[k] === k % 256;
	}
	result.download = { length: body.length, same, contentType: dl.meta.contentType,
		filename: dl.meta.filename || null };
	const part1 = await client.fetchOne(String(second.uid), { uid: true, bodyParts: ['1'] },
		{ uid: true });
	result.part1 = part1.bodyParts.get('1').toString();

	result.seen = await client.messageFlagsAdd(String(first.uid), ['\\Seen'], { uid: true });
	result.searchUnseen = await client.search({ seen: false }, { uid: true });
	result.searchSubject = await client.search({ subject: 'node message 3' }, { uid: true });
	result.searchHeader = await client.search({ header: { 'message-id': '<node2@example.net>' } },
		{ uid: true });
	result.searchBody = await client.search({ body: 'message 2.' }, { uid: true });

	// mailboxes with non-ASCII names (UTF-8 once UTF8=ACCEPT/IMAP4rev2 is enabled)
	result.created = await client.mailboxCreate('Projekte/Größe');
	result.renamed = await client.mailboxRename('Projekte/Größe', 'Projekte/Übersicht');
	await client.mailboxCreate('Temp');
	result.deleted = await client.mailboxDelete('Temp');
	result.listAfter = (await client.list()).map((b) => b.path).sort();
	result.statusRenamed = await client.status('Projekte/Übersicht',
		{ messages: true, uidNext: true, unseen: true });
	const moved = await client.messageMove(String(second.uid), 'Archive', { uid: true });
	result.move = { destination: moved.destination,
		uidMap: moved.uidMap ? Array.from(moved.uidMap.entries()) : null };
	const draft = 'From: ' + user + '\r\nTo: someone@example.net\r\nSubject: node draft\r\n' +
		'Message-ID: <nodedraft@example.net>\r\n\r\nUnfinished thoughts.\r\n';
	const app = await client.append('Drafts', draft, ['\\Draft']);
	result.append = { destination: app.destination, uid: app.uid,
		uidValidity: app.uidValidity !== undefined ? String(app.uidValidity) : null };
	// APPEND with an INTERNALDATE and a keyword, and a message with a NUL byte
	// (imapflow sends that as a literal8 when BINARY is offered)
	await client.mailboxCreate('Imported');
	const dated = await client.append('Imported', 'Subject: dated\r\nMessage-ID: <dated@example.net>\r\n' +
		'\r\nold\r\n', ['\\Seen', '$Work'], new Date('2020-01-02T03:04:05Z'));
	const nul = await client.append('Imported', 'Subject: nul\r\nMessage-ID: <nul@example.net>\r\n' +
		'\r\nbinary \u0000 byte\r\n', []);
	const imp = await client.getMailboxLock('Imported');
	try {
		const d = await client.fetchOne(String(dated.uid), { uid: true, internalDate: true, flags: true },
			{ uid: true });
		const read = async (part) => {
			const dl = await client.download(String(nul.uid), part, { uid: true });
			const chunks = [];
			for await (const chunk of dl.content) {
				chunks.push(chunk);
			}
			return Buffer.concat(chunks).toString('latin1');
		};
		result.imported = { datedUid: dated.uid, nulUid: nul.uid,
			internalDate: d.internalDate.toISOString(), flags: Array.from(d.flags).sort(),
			// download() fetches BODY[] and BODY[1] (no NUL allowed there); binary: BINARY[1]
			nulSource: await read(undefined),
			nulPart: await read('1'),
			nulBinary: (await client.fetchOne(String(nul.uid), { uid: true, bodyParts: ['1'] },
				{ uid: true, binary: true })).bodyParts.get('1').toString('latin1'),
			search: await client.search({ or: [{ keyword: '$Work' }, { body: 'binary' }] }, { uid: true }),
			since: await client.search({ since: new Date('2019-12-31'), before: new Date('2020-01-05') },
				{ uid: true }) };
	} finally {
		imp.release();
	}
	await client.mailboxOpen('INBOX');
	// LIST-STATUS (RFC 5819)
	result.listStatus = (await client.list({ statusQuery: { messages: true, unseen: true, uidNext: true } }))
		.map((b) => ({ path: b.path, status: b.status }));

	// COPY to Trash, a keyword there, then UID EXPUNGE of just that copy (UIDPLUS)
	const copied = await client.messageCopy(String(first.uid), 'Trash', { uid: true });
	result.copy = { destination: copied.destination,
		uidMap: copied.uidMap ? Array.from(copied.uidMap.entries()) : null };
	const trashLock = await client.getMailboxLock('Trash');
	try {
		await client.messageFlagsAdd('1', ['$Label1', '\\Answered'], { uid: true });
		const tr = await client.fetchOne('1', { uid: true, flags: true, headers: ['subject'] },
			{ uid: true });
		result.trashFlags = Array.from(tr.flags).sort();
		result.trashHeaders = tr.headers.toString();
		result.trashDeleted = await client.messageDelete('1', { uid: true });
		result.trashExists = client.mailbox.exists;
	} finally {
		trashLock.release();
	}
	await client.mailboxOpen('INBOX');
	const after = await client.fetchAll('1:*', { uid: true, flags: true, envelope: true });
	result.inboxAfter = after.map((m) => ({ uid: m.uid, messageId: m.envelope.messageId,
		flags: Array.from(m.flags).sort() }));

	// IDLE: tell the Python side we are idling; it delivers one message by SMTP.
	let gotExists;
	const existsSeen = new Promise((resolve) => { gotExists = resolve; });
	client.on('exists', (data) => gotExists({ count: data.count, prevCount: data.prevCount }));
	const idleDone = client.idle();
	out({ event: 'idle', idling: await idleAcknowledged(1) });
	const t0 = Date.now();
	result.idleExists = await withTimeout(existsSeen, 15000, 'EXISTS during IDLE');
	result.idleExists.ms = Date.now() - t0;
	// any command ends the IDLE (imapflow sends DONE first)
	const last = await client.fetchOne('*', { uid: true, envelope: true });
	await withTimeout(idleDone, 10000, 'IDLE to end');
	result.idleMessage = { uid: last.uid, messageId: last.envelope.messageId };

	// IDLE again: the Python side flags one message and expunges another from a
	// second session; both reach us as untagged FETCH and EXPUNGE while idling.
	let gotFlags, gotExpunge;
	const flagsSeen = new Promise((resolve) => { gotFlags = resolve; });
	const expungeSeen = new Promise((resolve) => { gotExpunge = resolve; });
	client.on('flags', (data) => gotFlags({ seq: data.seq, uid: data.uid || null,
		flags: Array.from(data.flags || []).sort() }));
	client.on('expunge', (data) => gotExpunge({ seq: data.seq }));
	const idle2Done = client.idle();
	out({ event: 'idle2', idling: await idleAcknowledged(2) });
	result.idleFlags = await withTimeout(flagsSeen, 15000, 'FETCH FLAGS during IDLE');
	result.idleExpunge = await withTimeout(expungeSeen, 15000, 'EXPUNGE during IDLE');
	await client.noop();
	await withTimeout(idle2Done, 10000, 'second IDLE to end');
	result.existsAfterExpunge = client.mailbox.exists;

	await client.logout();
	result.loggedOut = true;
	out({ event: 'result', result });
}

main().then(() => process.exit(0), (err) => {
	out({ event: 'error', message: String(err && err.stack || err),
		response: err && err.response, code: err && err.code });
	process.exit(1);
});
