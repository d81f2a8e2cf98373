package eventlog

// The AAEL writer (text, tagged event, record, the no-CCEL header and end
// marker) is the guest's, in guest/aael: this package only parses logs, and
// re-encodes parsed events.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// AppendBinary appends the event as a TCG_PCR_EVENT2: index, type, digest
// count, (algorithm, digest)..., data size, data.
func (e Event) AppendBinary(b []byte) ([]byte, error) {
	if uint64(len(e.Data)) > math.MaxUint32 || uint64(len(e.Digests)) > math.MaxUint32 {
		return nil, errors.New("eventlog: event too large")
	}
	b = binary.LittleEndian.AppendUint32(b, e.Index)
	b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Digests)))
	for _, d := range e.Digests {
		size, err := d.Alg.Size()
		if err != nil {
			return nil, err
		}
		if len(d.Digest) != size {
			return nil, fmt.Errorf("eventlog: %s digest of %d bytes, want %d", d.Alg, len(d.Digest), size)
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(d.Alg))
		b = append(b, d.Digest...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
	return append(b, e.Data...), nil
}
