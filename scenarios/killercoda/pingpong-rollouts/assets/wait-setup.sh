#!/usr/bin/env bash
# Foreground: waits for the background setup, then loads the settings.
echo "Preparing the workshop (cloning the repository) ..."
while [ ! -f /tmp/pingpong-setup-done ]; do sleep 1; done
echo 'source /root/pingpong-env.sh' >> /root/.bashrc
echo "Ready: the repository is in /root/pingpong, the overlay in /root/pingpong-deploy."
