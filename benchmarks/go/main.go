// Command sacsock-bench is the benchmarks' Go server: a minimal server of the sac-sock wire (the wire
// of the Go original, Sacrificial-Socket, which typed-ss speaks too: docs/protocol.md) written for the
// measurements only, on gorilla/websocket, doing the work typed-ss's benchmark server does
// (benchmarks/servers.py). It is not the original library and holds none of its code:
// benchmarks/goserver.py builds it at bench time with Debian's Go and Debian's gorilla/websocket
// (GOPATH mode, offline).
//
//	sacsock-bench
//
// listens on an OS-picked port of 127.0.0.1, prints "PORT <n>" once bound, and serves WebSocket
// connections on /socket until SIGINT or SIGTERM.
//
// The wire (client to server: <event> [0x01 <flags>] 0x02 <payload>; server to client:
// <event> 0x01 <type letter> 0x02 <payload>) and the operations:
//
//	echo <text>           answered "echo 0x01 S 0x02 <text>"
//	bc <text>             "bc 0x01 S 0x02 <text>" to every connection, the sender included
//	join <room>           joins the room, answered "joined 0x01 S 0x02 <room>"
//	rc <room> <text>      "rc 0x01 S 0x02 <room> <text>" to every member of the room
//	add 0x01 c<id> <text> a call, answered "add 0x01 Sr<id> 0x02 <text>"
//
// Every connection first receives "__hello 0x01 J 0x02 {...}", as from typed-ss, and joins its own
// "__socket_id:<id>" room, as in the original and in typed-ss. Payloads are checked to be UTF-8
// (typed-ss's handlers take str); a payload that is not is answered with "__error".
//
// How it is written: the way a Go server is usually written for speed. One goroutine per connection
// reads and handles each message in order (the original starts a goroutine per message instead);
// writes to a connection are serialised by a mutex, so a broadcast writes from the sender's goroutine
// straight into each recipient's socket (as the original's hub goroutine does), its frame built
// once (gorilla's PreparedMessage). Read and write buffers are gorilla's defaults (the HTTP server's
// 4 KiB ones, reused), no compression, 1 MiB messages at most.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

const (
	soh            = 0x01
	stx            = 0x02
	maxMessageSize = 1 << 20
)

var upgrader = websocket.Upgrader{Subprotocols: []string{"sac-sock"}}

type client struct {
	ws    *websocket.Conn
	mu    sync.Mutex // serialises writes: the client's own goroutine and every broadcaster's
	id    string
	rooms []string
	out   []byte // the reader goroutine's scratch buffer for the frames it answers with
}

func (c *client) write(messageType int, frame []byte) {
	c.mu.Lock()
	_ = c.ws.WriteMessage(messageType, frame) // a failed write shows as a read error soon after
	c.mu.Unlock()
}

func (c *client) writePrepared(pm *websocket.PreparedMessage) {
	c.mu.Lock()
	_ = c.ws.WritePreparedMessage(pm)
	c.mu.Unlock()
}

// emit sends "<event> 0x01 <header><id> 0x02 <payload>" as a text frame, built in the scratch buffer
// (id: a call's id, after the header "Sr" of its reply; nil for an event).
func (c *client) emit(event, header string, id, payload []byte) {
	out := append(c.out[:0], event...)
	out = append(out, soh)
	out = append(out, header...)
	out = append(out, id...)
	out = append(out, stx)
	out = append(out, payload...)
	c.out = out
	c.write(websocket.TextMessage, out)
}

type hub struct {
	mu      sync.RWMutex
	clients map[*client]struct{}
	rooms   map[string]map[*client]struct{}
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	for _, room := range c.rooms {
		members := h.rooms[room]
		delete(members, c)
		if len(members) == 0 {
			delete(h.rooms, room)
		}
	}
	h.mu.Unlock()
}

func (h *hub) join(c *client, room string) {
	h.mu.Lock()
	members := h.rooms[room]
	if members == nil {
		members = make(map[*client]struct{})
		h.rooms[room] = members
	}
	if _, in := members[c]; !in {
		members[c] = struct{}{}
		c.rooms = append(c.rooms, room)
	}
	h.mu.Unlock()
}

// cast writes "<event> 0x01 S 0x02 <payload>" to every client (room "") or to every member of room.
// The frame is built once; the recipients are copied under the read lock and written to after it, so
// a slow recipient holds up this cast (and its sender's goroutine), not joins or other casts.
func (h *hub) cast(room, event string, payload []byte) {
	frame := make([]byte, 0, len(event)+3+len(payload))
	frame = append(frame, event...)
	frame = append(frame, soh, 'S', stx)
	frame = append(frame, payload...)
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
	if err != nil {
		return
	}
	h.mu.RLock()
	set := h.clients
	if room != "" {
		set = h.rooms[room]
	}
	recipients := make([]*client, 0, len(set))
	for c := range set {
		recipients = append(recipients, c)
	}
	h.mu.RUnlock()
	for _, c := range recipients {
		c.writePrepared(pm)
	}
}

func newID() string {
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	return base64.StdEncoding.EncodeToString(raw[:])
}

// readMessage reads the next data message into buf (reused), at most maxMessageSize bytes.
func readMessage(ws *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := ws.NextReader()
	if err != nil {
		return buf, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, d := range b {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla has answered the request
	}
	defer ws.Close()
	ws.SetReadLimit(maxMessageSize)
	c := &client{ws: ws, id: newID(), out: make([]byte, 0, 256)}
	h.add(c)
	defer h.remove(c)
	h.join(c, "__socket_id:"+c.id)
	hello := fmt.Sprintf(`{"v":1,"id":"%s","max_message_size":%d,"contract":""}`, c.id, maxMessageSize)
	c.emit("__hello", "J", nil, []byte(hello))

	buf := make([]byte, 0, 512)
	for {
		buf, err = readMessage(ws, buf)
		if err != nil {
			return
		}
		split := bytes.IndexByte(buf, stx)
		if split <= 0 {
			continue // no event: dropped, as the original does
		}
		event, flags, payload := buf[:split], []byte(nil), buf[split+1:]
		if soh := bytes.IndexByte(event, soh); soh >= 0 {
			event, flags = event[:soh], event[soh+1:]
		}
		if !utf8.Valid(payload) {
			detail := `{"event":"` + string(event) + `","code":"invalid_payload","detail":"payload is not valid UTF-8"}`
			c.emit("__error", "J", nil, []byte(detail))
			continue
		}
		switch string(event) {
		case "echo":
			c.emit("echo", "S", nil, payload)
		case "bc":
			h.cast("", "bc", payload)
		case "join":
			room := string(payload)
			h.join(c, room)
			c.emit("joined", "S", nil, payload)
		case "rc":
			room := payload
			if space := bytes.IndexByte(payload, ' '); space >= 0 {
				room = payload[:space]
			}
			h.cast(string(room), "rc", payload)
		case "add":
			if len(flags) > 1 && flags[0] == 'c' && isDigits(flags[1:]) { // a call: the reply carries its id
				c.emit("add", "Sr", flags[1:], payload)
			}
		}
	}
}

func main() {
	h := &hub{clients: make(map[*client]struct{}), rooms: make(map[string]map[*client]struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/socket", h.serve)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		os.Exit(0)
	}()
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
