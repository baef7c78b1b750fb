package main

import "fmt"

// brokenDeliveries lists every measurement whose deliveries broke the
// feed's promise: an acknowledged write missing at a subscriber once the
// scenario's drain is over, delivered twice, or out of order. Such a run
// fails (run returns an error) whatever its speed. The saturation ramp is
// the one exception for missing deliveries: a step whose deliveries are
// late is where the ramp stops (its knee), so only its duplicates and
// reordering count; the bare broadcaster is not roomfeed and is not
// checked.
func brokenDeliveries(rep *Report) []string {
	var broken []string
	check := func(backend, what string, d delivery, late bool) {
		if d.Lost > 0 && !late {
			broken = append(broken, fmt.Sprintf("%s, %s: %d deliveries lost", backend, what, d.Lost))
		}
		if d.Duplicates > 0 {
			broken = append(broken, fmt.Sprintf("%s, %s: %d deliveries duplicated", backend, what, d.Duplicates))
		}
		if d.OutOfOrder > 0 {
			broken = append(broken, fmt.Sprintf("%s, %s: %d deliveries out of order", backend, what, d.OutOfOrder))
		}
	}
	for _, r := range rep.Runs {
		for _, p := range r.FanOut {
			check(r.Backend, fmt.Sprintf("fan-out at %d subscribers", p.Subscribers), p.delivery, false)
		}
		if s := r.Saturation; s != nil {
			runs := []*SatRun{&s.Roomfeed, s.Paced}
			for _, sr := range runs {
				if sr == nil {
					continue
				}
				for _, st := range sr.Steps {
					check(r.Backend, fmt.Sprintf("saturation (%s) at %.0f writes/s", sr.Server, st.TargetRate),
						delivery{Lost: st.Lost, Duplicates: st.Duplicates, OutOfOrder: st.OutOfOrder}, true)
				}
			}
		}
		if m := r.ManyRooms; m != nil {
			check(r.Backend, "many rooms", m.delivery, false)
		}
		if f := r.FullNode; f != nil {
			for _, p := range f.Points {
				check(r.Backend, fmt.Sprintf("full node connected %d at a time", p.Parallel), p.Writes.delivery, false)
			}
		}
		if s := r.Storm; s != nil {
			for _, p := range s.Runs {
				check(r.Backend, "reconnect storm ("+p.Signal+")", p.delivery, false)
			}
		}
		if t := r.TwoNodes; t != nil {
			check(r.Backend, "two nodes, one node", t.SingleNode.delivery, false)
			check(r.Backend, "two nodes, across", t.AcrossNodes.delivery, false)
		}
		if s := r.Scale; s != nil {
			check(r.Backend, "scale-out", s.delivery, false)
		}
	}
	return broken
}
