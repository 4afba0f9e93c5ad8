/* lease.h -- leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm) */
#ifndef MILO_LEASE_H
#define MILO_LEASE_H

#include <stdbool.h>

#define LEASE_DURATION_S 15	/* client-go's defaults */
#define LEASE_RENEW_DEADLINE_S 10
#define LEASE_RETRY_PERIOD_S 2

struct kube_client;
struct lease;

struct lease_config {
	struct kube_client *client;	/* borrowed */
	const char *namespace;
	const char *name;
	const char *identity;		/* this replica: "<hostname>_<random>" */
	unsigned int duration_s;	/* 0: defaults above */
	unsigned int renew_deadline_s;
	unsigned int retry_period_s;
	/*
	 * Called when leadership is won or lost, from one of the election's
	 * threads, one call at a time and in order. false comes by the renew
	 * deadline even while a request to the API hangs. It must not call
	 * lease_stop().
	 */
	void (*on_change)(bool leading, void *arg);
	void *arg;
};

/*
 * Starts campaigning on a thread. Returns 0, -EINVAL for a missing
 * client, namespace, name or identity or for durations (zeros replaced by
 * the defaults first) that break client-go's rule duration > renew
 * deadline > 1.2 x retry period, -ENOMEM, or -ENAMETOOLONG. On error *out
 * is NULL.
 */
int lease_start(const struct lease_config *cfg, struct lease **out);

/* True while this replica holds the lease (renewed within the deadline). */
bool lease_leading(struct lease *l);

/*
 * Milliseconds this replica may still act as the leader: until its renew
 * deadline runs out, which comes before anyone else may take the lease
 * (the lease duration). 0 when it does not lead. A write is checked
 * against this just before it is sent, so a leader that stalled (a paused
 * container, a debugger) makes none after it lost the lease.
 */
long lease_remaining_ms(struct lease *l);

/* Stops campaigning; a leader releases the lease so another takes over at once. */
void lease_stop(struct lease *l);

#endif
