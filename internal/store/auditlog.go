package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// auditLog keeps the Badger backend's audit trail in append-only segment
// files of JSON lines (<dir>/<first seq>.jsonl), one event per line,
// written with write(2).
//
// The trail is written once and never updated, at the rate of the Check
// path. In Badger every event went through the memtable, its write-ahead
// log, table builds and compactions, and every table stayed memory-mapped,
// so the process's resident memory grew with the trail (about 1.3 MB/s at
// 5,000 checks/s). Here an append is one write of the batch's lines to the
// page cache, as durable as Badger without SyncWrites (it survives a
// process crash), and reading uses the same files.
//
// A line is written only whole; a tail torn by a machine crash (no final
// newline, or not an event) is cut off when the log opens.
type auditLog struct {
	dir    string
	maxSeg int64

	mu   sync.Mutex
	segs []*segment // by first seq
	cur  *os.File   // the last segment, open for appending
	size int64      // of cur
	last AuditEvent // newest event; Seq 0 when the trail is empty
	buf  []byte
}

type segment struct {
	first uint64
	path  string
	// marks are (seq, offset) of every markEvery-th event, filled as the
	// segment is written or first read, so a read starts near its seq.
	marks []mark
	// complete is true once marks cover the whole segment.
	complete bool
}

type mark struct {
	seq uint64
	off int64
}

const (
	markEvery      = 256
	auditSegSuffix = ".jsonl"
)

func openAuditLog(dir string, maxSeg int64) (*auditLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := &auditLog{dir: dir, maxSeg: maxSeg}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), auditSegSuffix)
		if !ok || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("audit log: unexpected file %s", e.Name())
		}
		l.segs = append(l.segs, &segment{first: first, path: filepath.Join(dir, e.Name())})
	}
	sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].first < l.segs[j].first })
	if len(l.segs) == 0 {
		return l, nil
	}
	// The last segment is read whole: it gives the newest event and is
	// cut back to its last whole line.
	seg := l.segs[len(l.segs)-1]
	f, err := os.OpenFile(seg.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	end, last, err := l.index(seg, f, 0, false, func(AuditEvent) bool { return true })
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != end {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit log: cut torn tail of %s: %w", seg.path, err)
		}
	}
	l.cur, l.size = f, end
	if last.Seq != 0 {
		l.last = last
	} else if len(l.segs) > 1 {
		// An empty last segment (created, then the machine crashed): the
		// newest event ends the one before.
		prev := l.segs[len(l.segs)-2]
		pf, err := os.Open(prev.path)
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		_, l.last, err = l.index(prev, pf, 0, false, func(AuditEvent) bool { return true })
		pf.Close()
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// index reads seg from offset off (a line start) to its end, calling keep
// with each event until it returns false, and fills seg's marks when read
// from the start. It returns the offset after the last whole event and the
// last event read.
//
// A final line without its newline is being written, or was torn by a
// crash: the log ends before it. A whole line that is not an event is
// corruption (or tampering): strict reads fail on it, so that a listing or
// a verification cannot silently stop short; the lenient read at open
// passes over it, and what follows the last whole event (a torn tail, or
// the zeros a crash can leave) is cut off.
func (l *auditLog) index(seg *segment, f *os.File, off int64, strict bool, keep func(AuditEvent) bool) (int64, AuditEvent, error) {
	var last AuditEvent
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, last, fmt.Errorf("audit log: %w", err)
	}
	fromStart := off == 0 && !seg.complete
	if fromStart {
		seg.marks = seg.marks[:0]
	}
	r := bufio.NewReaderSize(f, 64<<10)
	n := 0
	end := off
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return end, last, fmt.Errorf("audit log: read %s: %w", seg.path, err)
		}
		lineAt := off
		off += int64(len(line))
		var ev AuditEvent
		if json.Unmarshal(line, &ev) != nil || ev.Seq == 0 {
			if strict {
				return end, last, fmt.Errorf("audit log: %s at offset %d holds a line that is not an audit event", seg.path, lineAt)
			}
			continue
		}
		if fromStart && n%markEvery == 0 {
			seg.marks = append(seg.marks, mark{seq: ev.Seq, off: lineAt})
		}
		n++
		end = off
		last = ev
		if !keep(ev) {
			return end, last, nil
		}
	}
	if fromStart {
		seg.complete = true
	}
	return end, last, nil
}

// errRefused marks an append refused before anything was written (the
// events do not continue the chain, or do not encode): not a disk failure.
var errRefused = errors.New("audit append refused")

// append writes events, which must continue the trail exactly. lines,
// when set, is their encoding, one JSON line each.
func (l *auditLog) append(events []AuditEvent, lines []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := events[0].Seq
	switch {
	case first == 0:
		return fmt.Errorf("%w: audit seq starts at 1", errRefused)
	case first <= l.last.Seq:
		return fmt.Errorf("%w: audit seq %d is already stored: %w", errRefused, first, ErrAlreadyExists)
	case first != l.last.Seq+1:
		return fmt.Errorf("%w: audit seq %d leaves a gap after the stored chain", errRefused, first)
	}
	var marks []mark // offsets relative to the batch
	buf := lines
	if buf == nil {
		buf = l.buf[:0]
	}
	off := 0
	for i, e := range events {
		if e.Seq != first+uint64(i) {
			return fmt.Errorf("%w: audit seq %d does not continue the batch at %d", errRefused, e.Seq, first+uint64(i))
		}
		if (e.Seq-1)%markEvery == 0 {
			marks = append(marks, mark{seq: e.Seq, off: int64(off)})
		}
		if lines != nil {
			n := bytes.IndexByte(lines[off:], '\n')
			if n < 0 {
				return fmt.Errorf("%w: %d lines for %d events", errRefused, i, len(events))
			}
			off += n + 1
			continue
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		buf = append(append(buf, raw...), '\n')
		off = len(buf)
	}
	if lines == nil {
		l.buf = buf
	} else if off != len(lines) {
		return fmt.Errorf("%w: more lines than events", errRefused)
	}
	if l.cur == nil || (l.size > 0 && l.size+int64(len(buf)) > l.maxSeg) {
		if err := l.rotate(first); err != nil {
			return err
		}
	}
	seg := l.segs[len(l.segs)-1]
	if n, err := l.cur.Write(buf); err != nil {
		if n > 0 {
			_ = l.cur.Truncate(l.size) // take back a partial batch
		}
		return fmt.Errorf("audit log: write: %w", err)
	}
	// A removed data directory still takes writes into the open file, and
	// they would vanish at restart: a trail that cannot be found again is
	// not stored.
	var st syscall.Stat_t
	if err := syscall.Fstat(int(l.cur.Fd()), &st); err != nil || st.Nlink == 0 {
		return fmt.Errorf("audit log: %s was removed under the running process", seg.path)
	}
	for _, m := range marks {
		seg.marks = append(seg.marks, mark{seq: m.seq, off: l.size + m.off})
	}
	l.size += int64(len(buf))
	l.last = events[len(events)-1]
	return nil
}

// rotate starts a segment whose first event is first.
func (l *auditLog) rotate(first uint64) error {
	path := filepath.Join(l.dir, fmt.Sprintf("%020d%s", first, auditSegSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: new segment: %w", err)
	}
	// The new file's name, and the end of the one before, must survive a
	// machine crash like the events (audit.durability: sync).
	if err := syncDir(l.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("audit log: new segment: %w", err)
	}
	if l.cur != nil {
		if err := fdatasync(l.cur); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return fmt.Errorf("audit log: sync segment: %w", err)
		}
		_ = l.cur.Close()
		// The segment before is whole: its marks stand.
		l.segs[len(l.segs)-1].complete = true
	}
	l.cur, l.size = f, 0
	l.segs = append(l.segs, &segment{first: first, path: path, complete: true})
	return nil
}

// list returns up to limit events with Seq >= from (limit <= 0: all).
func (l *auditLog) list(from uint64, limit int) ([]AuditEvent, error) {
	l.mu.Lock()
	segs := append([]*segment(nil), l.segs...)
	last := l.last.Seq
	l.mu.Unlock()
	var out []AuditEvent
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > from }) - 1
	if i < 0 {
		i = 0
	}
	for ; i < len(segs) && (limit <= 0 || len(out) < limit); i++ {
		if err := l.read(segs[i], from, last, limit, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// read appends the events of seg with from <= Seq <= last to out.
func (l *auditLog) read(seg *segment, from, last uint64, limit int, out *[]AuditEvent) error {
	f, err := os.Open(seg.path)
	if errors.Is(err, os.ErrNotExist) && seg.first <= l.pruned() {
		return nil // pruned since the listing began
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	l.mu.Lock()
	var off int64
	if seg.complete {
		for _, m := range seg.marks {
			if m.seq > from {
				break
			}
			off = m.off
		}
	}
	l.mu.Unlock()
	_, _, err = l.indexLocked(seg, f, off, func(ev AuditEvent) bool {
		if ev.Seq > last {
			return false // written after this read began
		}
		if ev.Seq >= from {
			*out = append(*out, ev)
		}
		return limit <= 0 || len(*out) < limit
	})
	return err
}

// indexLocked is index with the marks guarded: marks are filled only by a
// read from the start of a segment not yet indexed.
func (l *auditLog) indexLocked(seg *segment, f *os.File, off int64, keep func(AuditEvent) bool) (int64, AuditEvent, error) {
	l.mu.Lock()
	fill := off == 0 && !seg.complete
	l.mu.Unlock()
	if !fill {
		probe := &segment{path: seg.path, complete: true}
		return l.index(probe, f, off, true, keep)
	}
	probe := &segment{path: seg.path}
	end, last, err := l.index(probe, f, 0, true, keep)
	if err == nil && probe.complete {
		l.mu.Lock()
		if !seg.complete {
			seg.marks, seg.complete = probe.marks, true
		}
		l.mu.Unlock()
	}
	return end, last, err
}

func (l *auditLog) lastEvent() (AuditEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.last.Seq != 0
}

func (l *auditLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	err := l.cur.Close()
	l.cur = nil
	return err
}
