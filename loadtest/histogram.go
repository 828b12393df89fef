package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a log-bucketed latency histogram in the manner of HDR
// histograms: values under 128 µs are counted exactly, larger ones in
// buckets at most 1/64 (1.6 %) wide, up to about 19 hours. Recording is
// one atomic add, so every participant's reader goroutine records into
// the same histogram without a lock; 2,240 buckets cost 18 KB.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64 // µs, exact
}

const (
	subBits     = 7
	subCount    = 1 << subBits // values below this are exact
	subHalf     = subCount / 2
	maxShift    = 33 // 2^(33+7) µs ≈ 12.7 days: more than any run
	histBuckets = subCount + maxShift*subHalf
)

// bucketOf maps a value in µs to its bucket.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits
	if shift > maxShift {
		return histBuckets - 1
	}
	return subCount + (shift-1)*subHalf + int(v>>shift) - subHalf
}

// bucketHigh is the largest value that falls in bucket i: percentiles
// report it, so they never understate a latency.
func bucketHigh(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := (i-subCount)/subHalf + 1
	low := int64((i-subCount)%subHalf+subHalf) << shift
	return low + int64(1)<<shift - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := d.Microseconds()
	if v < 0 {
		v = 0 // a clock step backwards; count it as instant rather than drop it
	}
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Snapshot copies the counts. Concurrent records may be half-included,
// which moves a percentile by at most one value.
func (h *Histogram) Snapshot() *HistSnapshot {
	s := &HistSnapshot{Max: h.max.Load()}
	for i := range h.counts {
		c := h.counts[i].Load()
		s.Counts[i] = c
		s.Total += c
	}
	return s
}

// HistSnapshot is a point-in-time copy of a Histogram; the difference of
// two snapshots is the histogram of the values recorded in between.
type HistSnapshot struct {
	Counts [histBuckets]uint64
	Total  uint64
	Max    int64 // µs; for a difference, the top of its highest bucket
}

// Sub returns s minus an earlier snapshot of the same histogram.
func (s *HistSnapshot) Sub(prev *HistSnapshot) *HistSnapshot {
	d := &HistSnapshot{}
	for i := range s.Counts {
		c := s.Counts[i] - prev.Counts[i]
		d.Counts[i] = c
		d.Total += c
		if c > 0 {
			d.Max = min(bucketHigh(i), s.Max)
		}
	}
	return d
}

// Quantile returns the value (µs) at or below which the share q of
// values fall; 0 when empty.
func (s *HistSnapshot) Quantile(q float64) int64 {
	if s.Total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range s.Counts {
		seen += c
		if seen >= rank {
			return min(bucketHigh(i), s.Max)
		}
	}
	return s.Max
}

// Summary is a latency distribution as the report shows it.
type Summary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary reports the usual percentiles in milliseconds.
func (s *HistSnapshot) Summary() Summary {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Summary{
		Count: s.Total,
		P50:   ms(s.Quantile(0.50)),
		P90:   ms(s.Quantile(0.90)),
		P99:   ms(s.Quantile(0.99)),
		P999:  ms(s.Quantile(0.999)),
		Max:   ms(s.Max),
	}
}
