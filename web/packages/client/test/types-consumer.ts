// A stranger's TypeScript against the declarations of @roomfeed/client (types.test.js
// builds them and type-checks this file with --strict; it never runs).
import { connect, createOutbox, RoomFeedError } from '@roomfeed/client'
import type { ConnectOptions, HistoryPage, Connection, RoomElement, Change, Snapshot, Status, Problem, OutboxEntry, TokenSource, SignalEvent } from '@roomfeed/client'

const opts: ConnectOptions = { baseUrl: 'http://127.0.0.1:8080', client: 'bot' }
const rf: Connection = connect(opts)
const room = rf.follow('w1', { signals: ['cursor'] })
room.on('snapshot', (s: Snapshot) => console.log(s.cursor, s.elements.length))
room.on('change', (c: Change) => {
  const el: RoomElement | null = c.element
  console.log(c.id, el?.version, c.own)
})
room.on('status', (s: Status) => console.log(s.toUpperCase()))
room.on('problem', (p: Problem | null) => console.log(p?.code))
room.on('signal', (s: SignalEvent) => console.log(s.person, s.data))
room.on('presence', (people) => console.log(people.join(',')))
const els: Map<string, RoomElement> = room.elements
const who: Set<string> = room.people
console.log(els.size, who.size)
// @ts-expect-error: not an event of a room (the check fails if this line type-checks)
room.on('nonsense', () => {})
const page: HistoryPage = await rf.historyPage('w1')
console.log(page.next)
const outbox = createOutbox(rf)
outbox.on('ack', (a) => console.log(a.element.version))
const list: OutboxEntry[] = outbox.entries('w1')
const t: TokenSource = rf.endpoint.tokens
console.log(list.length, t, RoomFeedError)
rf.close()
