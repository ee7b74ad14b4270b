package redisipc

// broadcastLoop answers pub/sub broadcasts aimed at this node.
func (n *Node) broadcastLoop() {
	defer n.loopsWG.Done()
	for msg := range n.pubsub.Channel() {
		if !n.serving.Load() || n.inboxStopped() {
			continue
		}
		n.dispatch("", "", []byte(msg.Payload))
	}
}
