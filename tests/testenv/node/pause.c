/*
 * pause: the sandbox ("pause") container of the test node's pods.
 *
 * containerd starts one per pod to hold its namespaces; it does nothing but
 * wait for a signal. It is built here (scripts/testenv, `gcc -static`)
 * because the test environment reaches no image registry. As PID 1 of the
 * sandbox it also reaps orphaned children, as the upstream pause does.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {0}, child = {0};
  term.sa_handler = on_term;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGCHLD, &child, NULL);
  for (;;) {
    pause();
  }
  return 0;
}
