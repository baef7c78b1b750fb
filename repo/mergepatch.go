package repo

import (
	"encoding/json"
	"fmt"

	"github.com/roomfeed/roomfeed/internal/jsonmerge"
)

// mergePatch applies the RFC 7386 JSON merge patch to target (see
// jsonmerge.Patch); the result must be a JSON object.
func mergePatch(target, patch json.RawMessage) (json.RawMessage, error) {
	merged, err := jsonmerge.Patch(target, patch)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !isObject(merged) {
		return nil, fmt.Errorf("%w: merge patch result is not an object", ErrInvalid)
	}
	return merged, nil
}
